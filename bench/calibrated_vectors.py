"""Synthetic 384-d vectors shaped like real MiniLM embeddings, for million-row benchmarks.

Embedding a million real texts takes over an hour here, so the large benchmarks generate
vectors. How hard nearest-neighbour search is depends on the data's local intrinsic
dimensionality (LID): the older generator (``bench_pg_search.generate_isotropic``: 300
centres plus isotropic noise in all 384 dimensions) has an LID of ~94 at 1M, so a query's
10 nearest neighbours are all but equidistant, a worst case no real embedding set shows.

This generator is calibrated against real MiniLM embeddings of ~2,700 sentences from
Python's own documentation (``pydoc_data``, shipped with every CPython):

- cluster centres, local directions and noise are all drawn from the real embeddings'
  covariance (mean and eigen-spectrum), so the global shape matches;
- each of 300 clusters varies along 12 directions of its own plus a little noise;
- the variance split (centres 0.3, local 0.4, noise 0.05) was picked by a grid search
  matching, at the real set's size, its LID (12.9 real vs 14.1 generated), mean cosine
  (0.155 vs 0.203) and median cosine to the 1st/10th/100th neighbour
  (0.73/0.55/0.38 vs 0.73/0.48/0.38).

``describe`` prints those statistics for both, so the claim is re-checked on every run.
"""

from __future__ import annotations

import re
import tempfile
from pathlib import Path

import numpy as np

DIM = 384
CLUSTERS = 300
LOCAL_DIMS = 12
CENTRE_SHARE, LOCAL_SHARE, NOISE_SHARE = 0.3, 0.4, 0.05


def reference_sentences(limit: int = 6000) -> list[str]:
    """Real English sentences that every Python install has: the reference manual's topics."""
    from pydoc_data.topics import topics

    text = " ".join(topics.values())
    sentences = (re.sub(r"\s+", " ", s.strip()) for s in re.split(r"(?<=[.!?])\s+|\n\n", text))
    kept = [s for s in sentences if 20 <= len(s) <= 200 and not s.startswith(("*", ">>>", "..."))]
    unique = list(dict.fromkeys(kept))
    np.random.default_rng(0).shuffle(unique)
    return unique[:limit]


def reference_embeddings() -> np.ndarray:
    """Real MiniLM embeddings of the reference sentences (the model is converted in a temp dir)."""
    from memesearch.ml.minilm import MiniLmEmbedder

    with tempfile.TemporaryDirectory(prefix="memesearch-bench-minilm-") as cache:
        return MiniLmEmbedder(cache_dir=Path(cache)).embed(reference_sentences())


class CalibratedGenerator:
    def __init__(self, reference: np.ndarray, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.mean = reference.mean(axis=0)
        eigenvalues, eigenvectors = np.linalg.eigh(np.cov((reference - self.mean).T))
        # x = mean + root @ z with z ~ N(0, I) has the reference's covariance.
        self.root = (eigenvectors * np.sqrt(np.maximum(eigenvalues, 0))).astype(np.float32)
        self.centres = self.mean + np.sqrt(CENTRE_SHARE) * rng.standard_normal((CLUSTERS, DIM)) @ self.root.T
        local = rng.standard_normal((CLUSTERS, DIM, LOCAL_DIMS)).astype(np.float32)
        self.bases = np.einsum("ij,cjk->cik", self.root, local) * np.sqrt(LOCAL_SHARE / LOCAL_DIMS)

    def sample(self, count: int, seed: int) -> np.ndarray:
        """``count`` unit vectors; the same seed gives the same vectors."""
        rng = np.random.default_rng(seed)
        which = rng.integers(0, CLUSTERS, count)
        out = np.empty((count, DIM), dtype=np.float32)
        for cluster in range(CLUSTERS):
            rows = np.nonzero(which == cluster)[0]
            local = rng.standard_normal((len(rows), LOCAL_DIMS), dtype=np.float32) @ self.bases[cluster].T
            noise = np.sqrt(NOISE_SHARE) * rng.standard_normal((len(rows), DIM), dtype=np.float32) @ self.root.T
            out[rows] = self.centres[cluster] + local + noise
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def neighbour_statistics(vectors: np.ndarray, probes: int = 400, seed: int = 3) -> dict[str, float]:
    """LID (MLE over the 20 nearest) and median cosine to the 1st/10th/100th neighbour of
    ``probes`` stored vectors, by exact search."""
    vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
    probes = min(probes, len(vectors))
    chosen = np.random.default_rng(seed).choice(len(vectors), probes, replace=False)
    similarity = vectors[chosen] @ vectors.T
    similarity[np.arange(probes), chosen] = -2.0  # not its own neighbour
    keep = min(101, vectors.shape[0] - 1)
    top = -np.sort(-np.partition(similarity, -keep, axis=1)[:, -keep:], axis=1)
    distance = np.sqrt(np.maximum(2 - 2 * top[:, :20], 1e-12))
    lid = -1 / np.mean(np.log(distance[:, :-1] / distance[:, -1:]), axis=1)
    return {"lid": float(np.median(lid)), "nn1": float(np.median(top[:, 0])),
            "nn10": float(np.median(top[:, 9])), "nn100": float(np.median(top[:, min(99, keep - 1)]))}


def describe(label: str, vectors: np.ndarray) -> str:
    stats = neighbour_statistics(vectors)
    return (f"{label}: {len(vectors):,} vectors, LID {stats['lid']:.1f}, median cosine to neighbour "
            f"1/10/100: {stats['nn1']:.3f}/{stats['nn10']:.3f}/{stats['nn100']:.3f}")
