"""Nearest neighbours by dot product (cosine for unit vectors), shared by vector search
(384-d MiniLM) and template grouping (192-d colour layouts).

An exact float32 scan reads 4 bytes per dimension of every row for each query: at 100k
MiniLM rows that is 154 MB, bound by memory bandwidth. Large indexes therefore also keep
their rows as 7-bit integers (a quarter of the bytes) in an onnxruntime ``MatMulInteger``
whose weights are packed once (numpy has no integer BLAS). That scan picks the
``rerank_depth(k)`` best candidates, which are then scored exactly in float32, so the
scores returned are always exact and only a near-tie at the candidate cut can differ
from an exact scan (measured in bench/bench_vectors.py: recall@10 ≥ 0.99).

7-bit, not 8-bit: CPUs without VNNI multiply uint8 × int8 pairs with a saturating
16-bit add, which 127-valued weights could overflow; 63 cannot. Rows added after the
integer copy was built wait in a small float tail that is scanned exactly, until it
grows past TAIL_FRACTION of the index and the integer copy is rebuilt.

Small indexes stay exact: below QUANTIZE_FROM rows a float scan costs under a
millisecond and the integer kernel would save nothing.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

import numpy as np

#: Rows below which every scan is exact float32 (measured crossover is lower; exact is simplest).
QUANTIZE_FROM = 20_000
#: The integer copy is rebuilt once rows added since its last build exceed this share of it.
TAIL_FRACTION = 0.125
#: Candidates re-scored exactly per query: at least this many, and RERANK_FACTOR × k.
RERANK_MIN = 100
RERANK_FACTOR = 4
#: Largest integer weight: 7 bits, safe from 16-bit saturation on AVX2 (see above).
WEIGHT_LEVELS = 63
#: Rows quantized at a time while building (bounds the float temporaries).
BUILD_SLICE = 16_384
#: Candidate selection above SAMPLE_FROM rows reads a threshold from SAMPLE_SIZE evenly spaced
#: scores, set to keep SAMPLE_MARGIN times the candidates wanted (see _top_rows).
SAMPLE_FROM = 65_536
SAMPLE_SIZE = 8_192
SAMPLE_MARGIN = 4
#: Queries are scored per kernel call in chunks this tall (bounds the int32 score matrix).
QUERY_CHUNK = 128


def rerank_depth(k: int) -> int:
    return max(RERANK_MIN, RERANK_FACTOR * k)


class _Int8Scan:
    """Approximate scores of queries against a fixed set of rows, by ``MatMulInteger``."""

    def __init__(self, vectors: np.ndarray) -> None:
        from onnx import TensorProto, helper, numpy_helper

        from memesearch.ml.onnx_runtime.session import onnxruntime

        ort = onnxruntime()
        count, dim = vectors.shape
        # Per-dimension scale: every dimension uses the whole integer range. A query is
        # divided by the same scale, so the integer product ranks like the float one.
        # Done in slices of rows: no float temporary the size of the matrix.
        peak = np.zeros(dim, np.float32)
        for start in range(0, count, BUILD_SLICE):
            peak = np.maximum(peak, np.abs(vectors[start : start + BUILD_SLICE]).max(axis=0))
        self.inverse_scale = np.where(peak > 0, peak / WEIGHT_LEVELS, 1.0).astype(np.float32)
        scale = 1.0 / self.inverse_scale
        self.weights = np.empty((dim, count), np.int8)
        for start in range(0, count, BUILD_SLICE):
            self.weights[:, start : start + BUILD_SLICE] = np.rint(vectors[start : start + BUILD_SLICE] * scale).T
        # The weights reach the session as an external initializer (no protobuf copy of them).
        weights = TensorProto(name="rows", data_type=TensorProto.INT8, dims=[dim, count],
                              data_location=TensorProto.EXTERNAL)
        for key, value in (("location", "rows.bin"), ("offset", "0"), ("length", str(self.weights.nbytes))):
            weights.external_data.add(key=key, value=value)
        graph = helper.make_graph(
            [helper.make_node("MatMulInteger", ["query", "rows", "zero"], ["scores"])], "int8_scan",
            [helper.make_tensor_value_info("query", TensorProto.UINT8, [None, dim])],
            [helper.make_tensor_value_info("scores", TensorProto.INT32, [None, count])],
            [numpy_helper.from_array(np.array(128, np.uint8), "zero"), weights],
        )
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
        model.ir_version = 8
        options = ort.SessionOptions()
        # One thread, like the float scan (search/engine.single_threaded_blas): the scan is
        # memory-bound and a server runs one search per request thread.
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.add_external_initializers(["rows"], [ort.OrtValue.ortvalue_from_numpy(self.weights)])
        self._session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def scores(self, queries: np.ndarray) -> np.ndarray:
        """int32 [queries, rows], proportional to the float scores up to rounding."""
        scaled = queries * self.inverse_scale
        peak = np.abs(scaled).max(axis=1, keepdims=True)
        scaled = scaled * np.where(peak > 0, 127.0 / np.maximum(peak, 1e-30), 0.0)
        quantized = (np.rint(scaled) + 128).astype(np.uint8)
        return self._session.run(None, {"query": quantized})[0]


def _top_rows(scores: np.ndarray, depth: int) -> np.ndarray:
    """Positions of the ``depth`` highest ``scores`` (in no order), as ``np.argpartition`` gives
    them, but without partitioning every row: a threshold read from an even sample keeps about
    SAMPLE_MARGIN × depth rows, and only those are partitioned (1M rows: 0.4 ms instead of 15
    at load 7)."""
    count = len(scores)
    if count < SAMPLE_FROM:
        return np.argpartition(scores, count - depth)[count - depth :]
    sample = scores[:: count // SAMPLE_SIZE]
    keep = min(len(sample) - 1, int(len(sample) * SAMPLE_MARGIN * depth / count))
    threshold = np.partition(sample, len(sample) - 1 - keep)[len(sample) - 1 - keep]
    above = np.flatnonzero(scores >= threshold)
    if len(above) < depth:  # the sample missed (a very skewed row): partition all of it
        return np.argpartition(scores, count - depth)[count - depth :]
    return above[np.argpartition(scores[above], len(above) - depth)[len(above) - depth :]]


class NearestIndex:
    """Rows of (id, vector); top-k by dot product, optionally within an allowed id set.

    Adding is cheap (rows land in a float tail); reading is safe from several threads
    while no thread adds (search's engine swaps whole indexes instead of adding)."""

    def __init__(self, dim: int, ids: Iterable[int] | np.ndarray = (), vectors: np.ndarray | None = None,
                 *, quantize_from: int | None = None) -> None:
        ids = np.asarray(list(ids) if not isinstance(ids, np.ndarray) else ids, dtype=np.int64)
        vectors = np.zeros((0, dim), np.float32) if vectors is None else np.asarray(vectors, np.float32)
        if vectors.shape != (len(ids), dim):
            raise ValueError(f"expected {len(ids)} vectors of {dim} dimensions, got shape {vectors.shape}")
        self.dim = dim
        self.quantize_from = QUANTIZE_FROM if quantize_from is None else quantize_from
        capacity = max(1024, len(ids))
        self._vectors = np.zeros((capacity, dim), np.float32)
        self._vectors[: len(ids)] = vectors
        self._ids = np.zeros(capacity, np.int64)
        self._ids[: len(ids)] = ids
        self._size = len(ids)
        self._scan: _Int8Scan | None = None
        self._sealed = 0  # rows [0, _sealed) are in the integer scan
        self._build_lock = threading.Lock()
        self._maybe_build()

    def __len__(self) -> int:
        return self._size

    @property
    def ids(self) -> np.ndarray:
        return self._ids[: self._size]

    @property
    def quantized(self) -> bool:
        return self._scan is not None

    def add(self, item_id: int, vector: np.ndarray) -> None:
        if self._size == len(self._ids):
            grow = max(1024, len(self._ids))
            self._vectors = np.concatenate([self._vectors, np.zeros((grow, self.dim), np.float32)])
            self._ids = np.concatenate([self._ids, np.zeros(grow, np.int64)])
        self._vectors[self._size] = vector
        self._ids[self._size] = item_id
        self._size += 1
        self._maybe_build()

    def vector_of(self, item_id: int) -> np.ndarray | None:
        where = np.flatnonzero(self.ids == item_id)
        return self._vectors[where[0]].copy() if len(where) else None

    def _maybe_build(self) -> None:
        if self._size < self.quantize_from or self._size - self._sealed <= TAIL_FRACTION * self._sealed:
            return
        with self._build_lock:
            size = self._size
            self._scan = _Int8Scan(self._vectors[:size])
            self._sealed = size

    def search(self, query: np.ndarray, k: int, *, allowed: set[int] | np.ndarray | None = None,
               exclude: int | None = None) -> list[tuple[int, float]]:
        """The ``k`` best (id, exact score), best first; only ids in ``allowed`` when it is given."""
        mask = None
        if allowed is not None:
            wanted = np.fromiter(allowed, np.int64, len(allowed)) if isinstance(allowed, set) else np.asarray(allowed)
            mask = np.isin(self.ids, wanted)
        return self.search_many(np.asarray(query, np.float32)[None, :], k, exclude=[exclude], mask=mask)[0]

    def search_many(self, queries: np.ndarray, k: int, *, exclude: list[int | None] | None = None,
                    mask: np.ndarray | None = None) -> list[list[tuple[int, float]]]:
        """``search`` for each row of ``queries``; ``mask``: a boolean per row of the index."""
        queries = np.asarray(queries, np.float32)
        exclude = exclude if exclude is not None else [None] * len(queries)
        size, ids = self._size, self.ids
        if size == 0 or k <= 0:
            return [[] for _ in range(len(queries))]
        scan, sealed = self._scan, self._sealed
        allowed_rows = None if mask is None else np.flatnonzero(mask[:size])
        take = k + 1  # one spare for an excluded id (a meme is its own nearest)
        results = []
        for start in range(0, len(queries), QUERY_CHUNK):
            chunk = queries[start : start + QUERY_CHUNK]
            if scan is None and allowed_rows is None:  # exact: one matrix product for the whole chunk
                block = chunk @ self._vectors[:size].T
                every_row = np.arange(size)
                for scores, skip in zip(block, exclude[start : start + QUERY_CHUNK]):
                    results.append(self._select(every_row, scores, take, skip, ids)[:k])
                continue
            if scan is None or (allowed_rows is not None and len(allowed_rows) <= rerank_depth(take)):
                candidates = [allowed_rows] * len(chunk)  # few allowed rows: scored exactly
            else:
                candidates = self._candidates(scan, sealed, chunk, rerank_depth(take), mask)
            for query, rows, skip in zip(chunk, candidates, exclude[start : start + QUERY_CHUNK]):
                results.append(self._best(query, rows, take, skip, ids)[:k])
        return results

    def _candidates(self, scan: _Int8Scan, sealed: int, chunk: np.ndarray, depth: int,
                    mask: np.ndarray | None) -> list[np.ndarray]:
        """Per query: the ``depth`` best sealed rows by integer score, plus every tail row."""
        approx = scan.scores(chunk)
        if mask is not None:
            approx[:, ~mask[:sealed]] = np.iinfo(np.int32).min
        tail = np.arange(sealed, self._size)
        if mask is not None:
            tail = tail[mask[sealed : self._size]]
        depth = min(depth, sealed)
        best = [_top_rows(scores, depth) for scores in approx]
        if mask is not None:  # fewer allowed rows than depth: drop the masked ones that filled in
            return [np.concatenate([row[mask[row]], tail]) for row in best]
        return [np.concatenate([row, tail]) for row in best]

    def _best(self, query: np.ndarray, rows: np.ndarray, take: int, skip: int | None, ids: np.ndarray):
        """The ``take`` best of ``rows`` by exact score."""
        return self._select(rows, self._vectors[rows] @ query, take, skip, ids)

    @staticmethod
    def _select(rows: np.ndarray, scores: np.ndarray, take: int, skip: int | None, ids: np.ndarray):
        if len(rows) == 0:
            return []
        count = min(take, len(rows))
        top = np.argpartition(-scores, count - 1)[:count]
        top = top[np.lexsort((ids[rows[top]], -scores[top]))]  # ties: lower id first, as stable as exact
        return [(int(ids[rows[i]]), float(scores[i])) for i in top if ids[rows[i]] != skip]
