"""Keyword, vector and hybrid search over a store. Knows nothing about HTTP or the CLI.

Hybrid search fuses the keyword and vector rankings with reciprocal rank
fusion (RRF): score = sum over lists of 1 / (k + rank). RRF needs no score
calibration between BM25 and cosine, which is why it is the default. With a
visual search model installed, a third ranking joins the fusion: the memes'
image vectors by cosine with the query's text vector (memesearch.search.visual).
"""

from __future__ import annotations

import functools
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from memesearch.errors import InvalidInputError
from memesearch.ml.base import Embedder
from memesearch.nearest import NearestIndex
from memesearch.search.query import ParsedQuery, parse_query
from memesearch.search.query_batcher import QueryBatcher
from memesearch.store.templates import TemplateStore

if TYPE_CHECKING:
    from memesearch.store.base import Store

MODES = ("hybrid", "keyword", "vector")
# Bounds on what one search may ask for, shared by the CLI and the web API (both name them in their errors).
MAX_LIMIT = 1000
MAX_OFFSET = 100_000
MAX_QUERY_CHARS = 20_000
RRF_K = 60
# How deep each list is read before fusing: enough that a good hit ranked
# modestly by one retriever can still be lifted by the other.
_CANDIDATES = 200


@dataclass
class SearchHit:
    id: int
    path: str
    score: float
    ocr_text: str
    description: str
    user_description: str
    tags: list[str]
    format: str | None = None

    def as_dict(self) -> dict:
        return {
            "id": self.id, "path": self.path, "score": round(self.score, 6), "ocr_text": self.ocr_text,
            "description": self.description, "user_description": self.user_description, "tags": self.tags,
            "format": self.format,
        }


@dataclass
class SearchResult:
    query: str
    mode: str
    hits: list[SearchHit] = field(default_factory=list)
    ms: float = 0.0
    #: How many memes match in all (not just this page). Exact when ``total_is_exact``;
    #: otherwise a lower bound ("about N"): a retriever reached its candidate depth.
    total: int = 0
    total_is_exact: bool = True

    def as_dict(self) -> dict:
        return {"query": self.query, "mode": self.mode, "hits": [hit.as_dict() for hit in self.hits],
                "total": self.total, "total_is_exact": self.total_is_exact}


class VectorIndex:
    """Cosine search over the store's vectors in memory (``memesearch.nearest``: exact for small
    libraries, an int8 scan with an exact re-rank for large ones), rebuilt when they change."""

    def __init__(self, store: Store, model_id: str) -> None:
        self._store = store
        self._model_id = model_id
        self._reload_lock = threading.Lock()
        # (vectors_version, index), replaced as a whole so readers never need a lock.
        self._snapshot: tuple[int, NearestIndex | None] = (-1, None)

    def _current(self) -> NearestIndex | None:
        """The index of the store's current vectors; only a reload takes the lock, so
        concurrent searches do not queue behind one another."""
        version = self._store.vectors_version()
        snapshot = self._snapshot
        if snapshot[0] != version:
            with self._reload_lock:
                snapshot = self._snapshot
                if snapshot[0] != version:  # another thread may have reloaded meanwhile
                    ids, matrix = self._store.load_vectors(self._model_id)
                    index = NearestIndex(matrix.shape[1], ids, matrix) if len(ids) else None
                    snapshot = self._snapshot = (version, index)
        return snapshot[1]

    def vector_of(self, meme_id: int) -> np.ndarray | None:
        index = self._current()
        return index.vector_of(meme_id) if index is not None else None

    def search(self, query_vector: np.ndarray, limit: int, allowed: set[int] | None = None) -> list[tuple[int, float]]:
        index = self._current()
        if index is None or limit <= 0:
            return []
        return index.search(query_vector.astype(np.float32), limit, allowed=allowed)


class StoreVectorIndex:
    """Vector search delegated to a store that can search in the database (PostgreSQL HNSW).

    Same interface as ``VectorIndex``; nothing is loaded into memory, so it scales to millions.
    """

    def __init__(self, store: Store, model_id: str) -> None:
        self._store = store
        self._model_id = model_id

    def vector_of(self, meme_id: int) -> np.ndarray | None:
        return self._store.vector_of(self._model_id, meme_id)

    def search(self, query_vector: np.ndarray, limit: int, allowed: set[int] | None = None) -> list[tuple[int, float]]:
        return self._store.vector_search(self._model_id, query_vector.astype(np.float32), limit, allowed)


def rrf_fuse(rankings: list[list[int]], k: int = RRF_K) -> list[tuple[int, float]]:
    scores: dict[int, float] = {}
    for ranking in rankings:
        for rank, meme_id in enumerate(ranking, start=1):
            scores[meme_id] = scores.get(meme_id, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda item: (-item[1], item[0]))


def single_threaded_blas() -> None:
    """One BLAS thread for the similarity product. A 100k x 384 product is memory-bound, so a
    second thread gains little, while OpenBLAS's spinning worker threads, multiplied by a
    server's request threads, made searches up to ten times slower under concurrent load."""
    from threadpoolctl import threadpool_limits

    threadpool_limits(1, user_api="blas")


def vector_index(store, model_id: str):
    """Stores that search vectors themselves (PostgreSQL) are asked; others get an in-memory matrix."""
    return (StoreVectorIndex if hasattr(store, "vector_search") else VectorIndex)(store, model_id)


class SearchEngine:
    def __init__(self, store: Store, embedder: Embedder, *, visual=None) -> None:
        """``visual``: the image-text model (memesearch.visual.model.VisualModel), None, or a
        function returning the current one (a model downloaded while the app runs joins in)."""
        single_threaded_blas()
        self.store = store
        self.embedder = embedder
        self.templates = TemplateStore(store)
        self.vectors = vector_index(store, embedder.model_id)
        self._visual_model = visual if callable(visual) else (lambda: visual)
        self._visual_ranker = None
        # Concurrent searches share one model call; instant search and paging repeat the
        # same query text, so each text is embedded once.
        self._embed_query = functools.lru_cache(maxsize=256)(QueryBatcher(embedder.embed_queries).embed)

    @property
    def visual(self):
        """The image side of search (memesearch.search.visual.VisualRanker) for the current visual
        model, or None when there is none."""
        model = self._visual_model()
        if model is None:
            return None
        ranker = self._visual_ranker
        if ranker is None or ranker.visual is not model:
            from memesearch.search.visual import VisualRanker

            ranker = self._visual_ranker = VisualRanker(self.store, model, vector_index(self.store, model.space))
        return ranker

    def search(self, query: str, *, mode: str = "hybrid", limit: int = 20, offset: int = 0,
               siblings: bool = False) -> SearchResult:
        """``siblings``: each hit is followed by the other memes of its template group."""
        if mode not in MODES:
            raise InvalidInputError(f"unknown search mode {mode!r}; choose one of {', '.join(MODES)}")
        if not 1 <= limit <= MAX_LIMIT:
            raise InvalidInputError(f"limit must be between 1 and {MAX_LIMIT} (got {limit})")
        if not 0 <= offset <= MAX_OFFSET:
            raise InvalidInputError(f"offset must be between 0 and {MAX_OFFSET} (got {offset})")
        if len(query) > MAX_QUERY_CHARS:
            raise InvalidInputError(f"the query has {len(query)} characters; at most {MAX_QUERY_CHARS} are accepted")
        started = time.perf_counter()
        parsed = parse_query(query)
        ranked, exact = self._rank(parsed, mode, limit + offset)
        if siblings:
            ranked = self._with_siblings(ranked, limit + offset)
        window = ranked[offset : offset + limit]
        memes = {meme.id: meme for meme in self.store.get_memes([meme_id for meme_id, _ in window])}
        hits = [
            SearchHit(
                id=meme_id, path=memes[meme_id].path, score=score, ocr_text=memes[meme_id].ocr_text,
                description=memes[meme_id].description, user_description=memes[meme_id].user_description,
                tags=memes[meme_id].tags, format=memes[meme_id].format,
            )
            for meme_id, score in window if meme_id in memes
        ]
        total = len(ranked)
        if len(hits) < len(window):  # a meme vanished between ranking and fetching
            total -= len(window) - len(hits)
        return SearchResult(query=query, mode=mode, hits=hits, ms=(time.perf_counter() - started) * 1000,
                            total=max(total, offset + len(hits)), total_is_exact=exact)

    def _allowed(self, filters) -> set[int] | None:
        """The ids the filters allow; None when there are none (both retrievers already exclude
        missing memes, so no id set is built)."""
        if filters.is_empty():
            return None
        allowed = self.store.filter_ids(filters)
        if filters.templates or filters.same:
            allowed &= self.templates.filter_ids(filters.templates, filters.same)
        return allowed

    def _with_siblings(self, ranked: list[tuple[int, float]], wanted: int) -> list[tuple[int, float]]:
        """Each of the first ``wanted`` hits followed by its template siblings not ranked above it
        (they share its score); the rest of the ranking follows unchanged, so totals stay right."""
        groups = self.templates.siblings([meme_id for meme_id, _ in ranked[:wanted]])
        placed: set[int] = set()
        expanded: list[tuple[int, float]] = []
        for meme_id, score in ranked:
            if meme_id in placed:
                continue
            followers = groups.get(meme_id, []) if len(expanded) < wanted else []
            for member in [meme_id, *followers]:
                if member not in placed:
                    placed.add(member)
                    expanded.append((member, score))
        return expanded

    def _rank(self, parsed: ParsedQuery, mode: str, wanted: int) -> tuple[list[tuple[int, float]], bool]:
        """Every candidate, best first, and whether that list is all there is (the total is exact)."""
        allowed = self._allowed(parsed.filters)
        if not parsed.has_text:
            # Only filters (or nothing): newest first; the id set is complete, so the count is exact.
            ids = allowed if allowed is not None else self.store.filter_ids(parsed.filters)
            return [(meme_id, 0.0) for meme_id in sorted(ids, reverse=True)], True
        depth = max(_CANDIDATES, wanted)
        keyword: list[int] = []
        vector: list[tuple[int, float]] = []
        exact = True
        if mode in ("keyword", "hybrid"):
            found = self.store.keyword_search(parsed.words, parsed.phrases, depth * 2)
            keyword = [i for i in found if allowed is None or i in allowed]
            exact = len(found) < depth * 2 and len(keyword) <= depth
            keyword = keyword[:depth]
            # A named template group's members all answer to its name.
            named = self.templates.named_members(parsed.words + " ".join(parsed.phrases).split())
            named = [i for i in named if allowed is None or i in allowed][:depth]
            if named:
                keyword = [meme_id for meme_id, _ in rrf_fuse([keyword, named])]
        if mode in ("vector", "hybrid"):
            query_vector = self._embed_query(parsed.text)
            vector = self.vectors.search(query_vector, depth, allowed)
            floor = self.embedder.relevance_floor
            # A full candidate list whose last entry is still relevant may have more behind it.
            if len(vector) >= depth and (floor is None or vector[-1][1] >= floor):
                exact = False
            if floor is not None:
                # Below the floor a meme is not about the query at all: nonsense finds nothing.
                vector = [(meme_id, score) for meme_id, score in vector if score >= floor]
        if mode == "keyword":
            return [(meme_id, 1.0 / (RRF_K + rank)) for rank, meme_id in enumerate(keyword, start=1)], exact
        if mode == "vector":
            return vector, exact
        rankings = [keyword, [meme_id for meme_id, _ in vector]]
        visual = self.visual
        if visual is not None:
            pictures, pictures_exact = visual.rank(parsed.text, depth, allowed)
            rankings.append([meme_id for meme_id, _ in pictures])
            exact = exact and pictures_exact
        return rrf_fuse(rankings), exact

    def similar(self, meme_id: int, limit: int = 12) -> list[tuple[int, float]]:
        """Memes made from the same picture first (score 1.0), then the nearest by image vector
        (when a visual search model made them), then by text embedding; the meme itself excluded."""
        found = [(i, 1.0) for i in self.templates.siblings([meme_id]).get(meme_id, [])][:limit]
        visual = self.visual
        indexes = ([visual.images] if visual is not None else []) + [self.vectors]
        for index in indexes:
            if len(found) >= limit:
                break
            vector = index.vector_of(meme_id)
            if vector is None:
                continue
            taken = {meme_id} | {i for i, _ in found}
            hits = index.search(vector, limit + len(taken))
            found += [(i, s) for i, s in hits if i not in taken][: limit - len(found)]
        return found
