"""memesearch.nearest: the int8 scan with an exact re-rank against an exact float scan."""

from __future__ import annotations

import numpy as np
import pytest

from memesearch.nearest import SAMPLE_FROM, NearestIndex, _Int8Scan, _top_rows

DIM = 64


def clustered(count: int, seed: int, dim: int = DIM) -> np.ndarray:
    """Unit vectors around 50 centres: neighbours are close, as in real embeddings."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((50, dim)).astype(np.float32)
    vectors = centres[rng.integers(0, 50, count)] + 0.5 * rng.standard_normal((count, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def library():
    vectors = clustered(6000, seed=1)
    ids = np.arange(len(vectors), dtype=np.int64) * 7 + 3  # ids are not row numbers
    exact = NearestIndex(DIM, ids, vectors, quantize_from=10**9)
    quantized = NearestIndex(DIM, ids, vectors, quantize_from=1000)
    queries = clustered(100, seed=2)
    return ids, vectors, exact, quantized, queries


def test_integer_scores_equal_numpy_integer_product():
    """The kernel must not saturate (7-bit weights): its scores equal an exact integer product."""
    vectors = clustered(3000, seed=5)
    scan = _Int8Scan(vectors)
    queries = clustered(4, seed=6)
    scaled = queries * scan.inverse_scale
    scaled *= 127.0 / np.abs(scaled).max(axis=1, keepdims=True)
    expected = np.rint(scaled).astype(np.int32) @ scan.weights.astype(np.int32)
    assert np.array_equal(scan.scores(queries), expected)
    assert np.abs(scan.weights).max() <= 63


def test_quantized_recall_at_10_against_exact(library):
    ids, vectors, exact, quantized, queries = library
    assert quantized.quantized and not exact.quantized
    recalls = []
    for query in queries:
        truth = {i for i, _ in exact.search(query, 10)}
        found = quantized.search(query, 10)
        recalls.append(len(truth & {i for i, _ in found}) / 10)
    assert np.mean(recalls) >= 0.99


def test_scores_are_exact_and_ids_belong_to_their_vectors(library):
    ids, vectors, exact, quantized, queries = library
    by_id = dict(zip(ids.tolist(), vectors))
    found = quantized.search(queries[0], 20)
    assert len(found) == 20
    assert [s for _, s in found] == sorted((s for _, s in found), reverse=True)
    for meme_id, score in found:
        assert score == pytest.approx(float(by_id[meme_id] @ queries[0]), abs=1e-5)
    # A stored vector finds itself first.
    assert quantized.search(vectors[123], 1)[0][0] == ids[123]
    assert np.array_equal(quantized.vector_of(int(ids[123])), vectors[123])
    assert quantized.vector_of(-1) is None


@pytest.mark.parametrize("share", [0.003, 0.3])
def test_allowed_ids_only(library, share):
    """A small allowed set is scored exactly; a large one through the integer scan."""
    ids, vectors, exact, quantized, queries = library
    rng = np.random.default_rng(9)
    allowed = set(rng.choice(ids, int(len(ids) * share), replace=False).tolist())
    for query in queries[:20]:
        found = quantized.search(query, 10, allowed=allowed)
        assert found and {i for i, _ in found} <= allowed
        truth = [i for i, _ in exact.search(query, 10, allowed=allowed)]
        assert len(set(truth) & {i for i, _ in found}) >= 9
    assert quantized.search(queries[0], 10, allowed=set()) == []


def test_exclude_leaves_out_the_query_itself(library):
    ids, vectors, exact, quantized, queries = library
    found = quantized.search_many(vectors[:3], 5, exclude=[int(i) for i in ids[:3]])
    for own, hits in zip(ids[:3], found):
        assert len(hits) == 5 and own not in {i for i, _ in hits}


def test_added_rows_are_found_and_the_integer_copy_is_rebuilt():
    vectors = clustered(2400, seed=3)
    index = NearestIndex(DIM, np.arange(2000), vectors[:2000], quantize_from=1000)
    assert index.quantized
    for row in range(2000, 2400):  # more than the tail allows: a rebuild on the way
        index.add(row, vectors[row])
        if row == 2100:
            assert index.search(vectors[row], 1)[0][0] == row  # found in the float tail
    assert len(index) == 2400 and index._sealed > 2000
    for row in (5, 2150, 2399):
        assert index.search(vectors[row], 1)[0][0] == row


def test_small_and_empty_indexes():
    assert NearestIndex(DIM).search(np.ones(DIM, np.float32), 5) == []
    index = NearestIndex(DIM, [10, 20], np.eye(2, DIM, dtype=np.float32))
    assert not index.quantized
    assert [i for i, _ in index.search(np.eye(1, DIM, 1, dtype=np.float32)[0], 5)] == [20, 10]
    with pytest.raises(ValueError):
        NearestIndex(DIM, [1, 2], np.zeros((3, DIM), np.float32))


def test_quantized_index_smaller_than_the_rerank_depth_equals_exact():
    """Every row is a candidate then; their order must not matter."""
    vectors = clustered(60, seed=4)
    exact = NearestIndex(DIM, np.arange(60), vectors, quantize_from=10**9)
    quantized = NearestIndex(DIM, np.arange(60), vectors, quantize_from=0)
    assert quantized.quantized
    for query in clustered(10, seed=8):
        assert [i for i, _ in quantized.search(query, 12)] == [i for i, _ in exact.search(query, 12)]


@pytest.mark.parametrize("shape", ["scores", "ties", "sample misses"])
def test_candidate_selection_of_large_indexes_keeps_the_highest_scores(shape):
    """Above SAMPLE_FROM rows candidates come from a sampled threshold; they must be the same
    scores argpartition keeps, also when many tie or the sample sees only unusual values."""
    count, depth = SAMPLE_FROM * 3, 804
    rng = np.random.default_rng(5)
    scores = rng.integers(-60_000, 60_000, count, dtype=np.int32)
    if shape == "ties":
        scores //= 10_000
    if shape == "sample misses":  # high values exactly where the sample looks, low ones elsewhere
        scores = np.zeros(count, np.int32)
        step = count // 8192
        scores[::step] = np.arange(1, len(scores[::step]) + 1)
    top = _top_rows(scores, depth)
    assert len(top) == len(set(top.tolist())) == depth
    expected = np.sort(scores)[-depth:]
    assert np.array_equal(np.sort(scores[top]), expected)
