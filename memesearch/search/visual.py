"""The visual side of hybrid search: memes ranked by how well their picture fits a text query.

The query is embedded by the image-text model's text tower and compared (cosine) with the
memes' image vectors of the same model space. Cosines under the model's relevance floor are
dropped: a picture that is not about the query is no hit, so nonsense finds nothing here.
A model that fails at query time leaves search to words (logged once per failure), so a
broken download never breaks text search.
"""

from __future__ import annotations

import functools
import logging

import numpy as np

from memesearch.errors import ModelUnavailableError
from memesearch.search.query_batcher import QueryBatcher

log = logging.getLogger(__name__)


class VisualRanker:
    def __init__(self, store, visual, images) -> None:
        """``visual``: memesearch.visual.model.VisualModel; ``images``: a vector index of its space."""
        self.store = store
        self.visual = visual
        self.images = images
        # Concurrent searches share one text-tower call; paging repeats a query: embed it once.
        self._embed = functools.lru_cache(maxsize=256)(QueryBatcher(self._embed_texts).embed)

    def _embed_texts(self, texts: list[str]) -> np.ndarray:
        return self.visual.embed_texts(texts)

    def rank(self, text: str, depth: int, allowed: set[int] | None) -> tuple[list[tuple[int, float]], bool]:
        """(meme id, cosine) at or above the floor, best first, and whether that list is complete."""
        try:
            query = self._embed(text)
        except ModelUnavailableError as exc:
            log.warning("visual search skipped for this query: %s", getattr(exc, "message", exc))
            return [], True
        hits = self.images.search(query, depth, allowed)
        floor = self.visual.relevance_floor
        exact = not (len(hits) >= depth and hits[-1][1] >= floor)
        return [(meme_id, score) for meme_id, score in hits if score >= floor], exact
