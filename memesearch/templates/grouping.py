"""From template features to template groups.

Candidates come from the global vectors (``memesearch.nearest``, shared with vector
search: an int8 scan re-ranked exactly in float32, no approximate-index dependency); each
candidate is then verified with local features (``matching.verify``). Verified pairs are
edges; a group is a connected component of them, so a variant only has to match *one*
member to join.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from memesearch.nearest import NearestIndex
from memesearch.templates.record import VECTOR_DIM, TemplateFeatures
from memesearch.templates.matching import verify

#: How many nearest memes by global vector are verified for each new meme.
CANDIDATES = 12
#: Candidates less similar than this are not worth a verification (measured: true
#: pairs in the synthetic set go down to about 0.2).
MIN_COSINE = 0.0
#: Memes whose verifications run in parallel between two looks at the groups found so far.
WINDOW = 64


class VectorIndex(NearestIndex):
    """The colour layouts of memes, nearest by cosine (``memesearch.nearest``: exact for small
    libraries, an int8 scan with an exact re-rank of its best candidates for large ones)."""

    def __init__(self, ids: np.ndarray | tuple = (), vectors: np.ndarray | None = None) -> None:
        super().__init__(VECTOR_DIM, ids, vectors)

    @classmethod
    def from_matrix(cls, ids: np.ndarray, matrix: np.ndarray) -> VectorIndex:
        return cls(ids, matrix)

    def nearest(self, vector: np.ndarray, k: int, *, exclude: int | None = None) -> list[int]:
        return self.nearest_many(vector[None, :], k, exclude=[exclude])[0]

    def nearest_many(self, vectors: np.ndarray, k: int, *, exclude: list[int | None]) -> list[list[int]]:
        """The ``k`` nearest ids for each row of ``vectors`` (scored many rows per kernel call:
        several times faster than one scan per query)."""
        found = self.search_many(vectors, k, exclude=exclude)
        return [[meme_id for meme_id, score in hits if score >= MIN_COSINE] for hits in found]


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[int, int] = {}

    def find(self, item: int) -> int:
        parent = self.parent.setdefault(item, item)
        while parent != self.parent.setdefault(parent, parent):
            self.parent[item] = parent = self.parent[parent]
        return parent

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            self.parent[max(ra, rb)] = min(ra, rb)

    def sets(self, *, min_size: int, members: set[int]) -> list[set[int]]:
        """The components with at least ``min_size`` of ``members`` (other nodes left out)."""
        found: dict[int, set[int]] = {}
        for item in self.parent:
            if item in members:
                found.setdefault(self.find(item), set()).add(item)
        return [component for component in found.values() if len(component) >= min_size]


def find_partners(new: list[tuple[int, TemplateFeatures]], index: VectorIndex,
                  features_of: Callable[[list[int]], dict[int, TemplateFeatures]], components: UnionFind,
                  *, workers: int = 1) -> int:
    """Join each new meme to the memes it verifiably shares a picture with; returns verifications made.

    ``index`` must already hold every meme the new ones may join (the new ones
    included, so that two new variants of one template find each other).
    ``components`` holds the groups known so far and is updated in place; a
    candidate already in the new meme's component needs no verification.
    With ``workers`` > 1, verifications run in threads (OpenCV and SQLite release the
    GIL), WINDOW memes at a time; only this thread touches ``components``.
    """
    if not new:
        return 0
    neighbours = index.nearest_many(np.stack([features.vector for _, features in new]), CANDIDATES,
                                    exclude=[meme_id for meme_id, _ in new])

    def partners(meme_id: int, features: TemplateFeatures, candidates: list[int]) -> tuple[int, list[int]]:
        loaded = features_of(candidates)
        return len(loaded), [c for c in candidates if c in loaded and verify(features, loaded[c]).same]

    verified = 0
    if workers <= 1 or len(new) == 1:
        for (meme_id, features), candidates in zip(new, neighbours):
            loaded = features_of([c for c in candidates if components.find(c) != components.find(meme_id)])
            for candidate in candidates:  # re-checked: a union just made may spare a verification
                if candidate not in loaded or components.find(candidate) == components.find(meme_id):
                    continue
                verified += 1
                if verify(features, loaded[candidate]).same:
                    components.union(meme_id, candidate)
        return verified
    with ThreadPoolExecutor(max_workers=workers) as pool:
        for start in range(0, len(new), WINDOW):
            jobs = [(meme_id, features, [c for c in candidates if components.find(c) != components.find(meme_id)])
                    for (meme_id, features), candidates in zip(new[start : start + WINDOW], neighbours[start : start + WINDOW])]
            for (meme_id, _, _), (count, same) in zip(jobs, pool.map(lambda job: partners(*job), jobs)):
                verified += count
                for partner in same:
                    components.union(meme_id, partner)
    return verified
