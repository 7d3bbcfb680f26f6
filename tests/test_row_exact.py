"""The row probe that decides whether quantised SmolVLM captions may be batched (issue 16).

It must never say "rows are independent" where a wider check finds a batch changing a row, and
on the CPUs we measured (AVX-512 VNNI) it must allow the 8-bit blocks of our int8 decoders.
"""

from __future__ import annotations

import logging

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from memesearch.ml.cpu import has_vnni
from memesearch.ml.onnx_runtime import row_exact
from memesearch.ml.onnx_runtime.quantize import (
    Q8_ACCURACY_LEVEL,
    Q8_BLOCK_SIZE,
    quantize_matmuls_8bit_rows,
    per_row_matmuls,
)


def one_matmul(tmp_path, k: int, n: int, seed: int):
    """A session of one MatMul by a random (k, n) weight, through our per-row quantiser."""
    rng = np.random.default_rng(seed)
    weight = (rng.standard_normal((k, n)) * 0.05).astype(np.float32)
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, k])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, n])],
        [numpy_helper.from_array(weight, "w")],
    )
    source, target = tmp_path / f"mm{seed}.onnx", tmp_path / f"mm{seed}_q8.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(source))
    quantize_matmuls_8bit_rows(source, target)
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    return ort.InferenceSession(str(target), options, providers=["CPUExecutionProvider"])


def test_the_quantiser_marks_its_graphs(tmp_path):
    session = one_matmul(tmp_path, 64, 8, 0)
    assert per_row_matmuls(session.get_modelmeta().custom_metadata_map) == (8, Q8_BLOCK_SIZE, Q8_ACCURACY_LEVEL)
    assert per_row_matmuls({}) is None and per_row_matmuls({"memesearch.rows_independent": "yes"}) is None


def test_a_passing_probe_holds_on_a_wider_check(tmp_path):
    """Other shapes (a vocabulary-sized N, K not in the probe), other batch sizes, two threads:
    wherever the probe allows batching, every row equals the row alone, bit for bit."""
    if not row_exact.matmul_nbits_rows_independent(8, Q8_BLOCK_SIZE, Q8_ACCURACY_LEVEL):
        pytest.skip("the probe keeps batching off on this CPU; nothing to hold")
    rng = np.random.default_rng(7)
    for seed, (k, n) in enumerate(((576, 192), (960, 2560), (576, 4099))):
        session = one_matmul(tmp_path, k, n, seed)
        rows = rng.standard_normal((24, k)).astype(np.float32) * rng.uniform(0.01, 30, (24, 1)).astype(np.float32)
        alone = np.concatenate([session.run(None, {"x": rows[i : i + 1]})[0] for i in range(len(rows))])
        for batch in (2, 3, 8, 24):
            together = np.concatenate([session.run(None, {"x": rows[i : i + batch]})[0]
                                       for i in range(0, len(rows) - batch + 1, batch)])
            np.testing.assert_array_equal(together, alone[: len(together)], err_msg=f"K={k} N={n} batch={batch}")


@pytest.mark.skipif(not has_vnni(), reason="measured on AVX-512 VNNI CPUs only (docs/BENCHMARKS.md)")
def test_on_vnni_cpus_the_int8_decoder_blocks_batch_and_wider_blocks_do_not():
    # Blocks of 32 (our int8 decoders) keep rows apart; blocks of 128 do not (MLAS's one-row
    # kernel rounds differently there): the probe tells them apart on the same kernel family.
    assert row_exact.matmul_nbits_rows_independent(8, 32, 4)
    assert not row_exact.matmul_nbits_rows_independent(8, 128, 4)


def test_a_probe_that_cannot_run_keeps_batching_off(monkeypatch, caplog):
    def broken(*args):
        raise RuntimeError("no such kernel")

    monkeypatch.setattr(row_exact, "_probe", broken)
    row_exact.matmul_nbits_rows_independent.cache_clear()
    try:
        with caplog.at_level(logging.WARNING, logger=row_exact.__name__):
            assert row_exact.matmul_nbits_rows_independent(8, 32, 4) is False
        assert "one meme per call" in caplog.text
    finally:
        row_exact.matmul_nbits_rows_independent.cache_clear()
