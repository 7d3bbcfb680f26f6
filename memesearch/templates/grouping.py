"""From template features to template groups.

Candidates come from the global vectors (an exact cosine scan: at 100k memes × 192
dimensions it costs about as much as one verification, so an approximate index would
save nothing that matters and add a dependency); each candidate is then verified with
local features (``matching.verify``). Verified pairs are edges; a group is a connected
component of them, so a variant only has to match *one* member to join.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from memesearch.templates.record import VECTOR_DIM, TemplateFeatures
from memesearch.templates.matching import verify

#: How many nearest memes by global vector are verified for each new meme.
CANDIDATES = 12
#: Queries scored per matrix product: 128 × 100k scores is a 51 MB temporary.
QUERY_CHUNK = 128
#: Candidates less similar than this are not worth a verification (measured: true
#: pairs in the synthetic set go down to about 0.2).
MIN_COSINE = 0.0


class VectorIndex:
    """Exact nearest neighbours by cosine over unit vectors, grown in place."""

    def __init__(self, capacity: int = 1024) -> None:
        self._vectors = np.zeros((capacity, VECTOR_DIM), np.float32)
        self._ids = np.zeros(capacity, np.int64)
        self._size = 0

    @classmethod
    def from_matrix(cls, ids: np.ndarray, matrix: np.ndarray) -> VectorIndex:
        index = cls(capacity=max(1024, len(ids)))
        index._vectors[: len(ids)] = matrix
        index._ids[: len(ids)] = ids
        index._size = len(ids)
        return index

    def __len__(self) -> int:
        return self._size

    def add(self, meme_id: int, vector: np.ndarray) -> None:
        if self._size == len(self._ids):
            grow = max(1024, len(self._ids))
            self._vectors = np.concatenate([self._vectors, np.zeros((grow, VECTOR_DIM), np.float32)])
            self._ids = np.concatenate([self._ids, np.zeros(grow, np.int64)])
        self._vectors[self._size] = vector
        self._ids[self._size] = meme_id
        self._size += 1

    def nearest(self, vector: np.ndarray, k: int, *, exclude: int | None = None) -> list[int]:
        return self.nearest_many(vector[None, :], k, exclude=[exclude])[0]

    def nearest_many(self, vectors: np.ndarray, k: int, *, exclude: list[int | None]) -> list[list[int]]:
        """The ``k`` nearest ids for each row of ``vectors`` (one matrix product for all of them:
        several times faster than one scan per query, which is bound by memory bandwidth)."""
        if self._size == 0:
            return [[] for _ in range(len(vectors))]
        ids = self._ids[: self._size]
        take = min(k + 1, self._size)  # one spare: the query itself is usually its own nearest
        found = []
        for start in range(0, len(vectors), QUERY_CHUNK):
            scores = vectors[start : start + QUERY_CHUNK] @ self._vectors[: self._size].T
            top = np.argpartition(-scores, take - 1, axis=1)[:, :take]
            for row, candidates, skip in zip(scores, top, exclude[start : start + QUERY_CHUNK]):
                ordered = candidates[np.argsort(-row[candidates])]
                found.append([int(ids[i]) for i in ordered if ids[i] != skip and row[i] >= MIN_COSINE][:k])
        return found


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
                  features_of: Callable[[list[int]], dict[int, TemplateFeatures]], components: UnionFind) -> int:
    """Join each new meme to the memes it verifiably shares a picture with; returns verifications made.

    ``index`` must already hold every meme the new ones may join (the new ones
    included, so that two new variants of one template find each other).
    ``components`` holds the groups known so far and is updated in place; a
    candidate already in the new meme's component needs no verification.
    """
    if not new:
        return 0
    neighbours = index.nearest_many(np.stack([features.vector for _, features in new]), CANDIDATES,
                                    exclude=[meme_id for meme_id, _ in new])
    verified = 0
    for (meme_id, features), candidates in zip(new, neighbours):
        loaded = features_of([c for c in candidates if components.find(c) != components.find(meme_id)])
        for candidate in candidates:
            if candidate not in loaded or components.find(candidate) == components.find(meme_id):
                continue
            verified += 1
            if verify(features, loaded[candidate]).same:
                components.union(meme_id, candidate)
    return verified
