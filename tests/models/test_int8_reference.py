"""The int8 torch reference (memesearch/ml/families/common/int8_reference.py) against ONNX Runtime's int8 graphs.

Two levels:

* one quantised MatMul: ``int8_linear`` must equal what ONNX Runtime computes for a graph
  quantised like our exports (``quantize_dynamic``, MatMul, QInt8), bit for bit; for the
  ``MatMulNBits`` of SmolVLM's decoders, the stored q4 / 8-bit weights equal ``q4_dequantize`` /
  ``q8_dequantize`` and the 8-bit node's per-row int8 activations ``quantize_activation_rows``,
  bit for bit, and its output equals ``q8_rows_linear`` up to the order of MLAS's float sums;
* whole tiny models: the ONNX int8 captioner's greedy tokens against the int8 reference and
  against the fp32 reference, over several seeds.

Why the model level does not demand equality on every seed: the ops that stay fp32 (the
patch convolutions, norms, softmax, activations) differ between torch and ONNX Runtime by a
few ulps. In fp32 that never changes a token, but an ulp can move a value across an int8
rounding boundary (or move a tensor's min/max, hence its scale), and the resulting one-step
change sometimes flips a near-tied greedy token of these random models. Measured over seeds
0-14 x 2 images (16 tokens): smolvlm 26/30, florence2 26/30, moondream 29/30 sequences equal
to the int8 reference, against 3/30 .. 14/30 for the fp32 reference. SmolVLM's int8 decoder
with per-row activation blocks (seeds 0-14, the fixed image): 14/15, against 2/15 for fp32;
the miss (seed 12) is one vision tile whose per-tensor int8 rounding differs, while where the
vision features agree the logits agree to ~2e-6 at every step.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from memesearch.ml.base import CaptionRequest  # noqa: E402
from memesearch.ml.families import captioner_class  # noqa: E402
from memesearch.ml.check import FAMILIES, fixed_image  # noqa: E402
from memesearch.ml.families.common import int8_reference  # noqa: E402

SEEDS = range(5)
TOKENS = 16


def _quantised_linear_session(weight: np.ndarray, bias: np.ndarray | None, tmp_path: Path):
    """x @ weight.T (+ bias) as an ONNX MatMul (+ Add), quantised the way our exporters do."""
    from onnx import TensorProto, helper, numpy_helper
    from memesearch.ml.onnx_runtime.quantize import quantize_matmuls

    nodes = [helper.make_node("MatMul", ["x", "w"], ["y" if bias is None else "xw"])]
    initializers = [numpy_helper.from_array(np.ascontiguousarray(weight.T), "w")]
    if bias is not None:
        nodes.append(helper.make_node("Add", ["xw", "b"], ["y"]))
        initializers.append(numpy_helper.from_array(bias, "b"))
    graph = helper.make_graph(
        nodes, "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None, weight.shape[1]])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None, weight.shape[0]])],
        initializers,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    fp32, int8 = tmp_path / "linear.onnx", tmp_path / "linear_int8.onnx"
    onnx.save(model, str(fp32))
    quantize_matmuls(fp32, int8)
    assert any(node.op_type == "MatMulInteger" for node in onnx.load(str(int8)).graph.node)
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL  # as our sessions
    options.intra_op_num_threads = 1
    return ort.InferenceSession(str(int8), options, providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("seed", range(6))
def test_int8_linear_is_bit_exact_with_onnxruntime(seed, tmp_path):
    rng = np.random.default_rng(seed)
    inputs, outputs = int(rng.integers(8, 130)), int(rng.integers(8, 200))
    weight = (0.3 * rng.standard_normal((outputs, inputs))).astype(np.float32)
    bias = None if seed % 3 == 0 else (0.3 * rng.standard_normal(outputs)).astype(np.float32)
    x = (rng.standard_normal((2, int(rng.integers(1, 40)), inputs)) * rng.uniform(0.1, 10)).astype(np.float32)
    if seed % 2:  # non-negative activations: min clamps to 0, zero point 0 (e.g. after a ReLU)
        x = np.abs(x)
    expected = _quantised_linear_session(weight, bias, tmp_path).run(None, {"x": x})[0]
    weight_t = torch.from_numpy(weight)
    bias_t = None if bias is None else torch.from_numpy(bias)
    emulated = int8_reference.int8_linear(torch.from_numpy(x), weight_t, bias_t).numpy()
    np.testing.assert_array_equal(emulated, expected)
    # Not vacuous: the int8 product is not the fp32 one.
    assert not np.array_equal(emulated, torch.nn.functional.linear(torch.from_numpy(x), weight_t, bias_t).numpy())


def _matmul_nbits_session(weight: np.ndarray, quantize, tmp_path: Path):
    """(session, stored initializers) of x @ weight.T as one MatMul that ``quantize`` (one of our
    ``quantize.quantize_matmuls_*`` rewriters) turned into a ``MatMulNBits``."""
    from onnx import TensorProto, helper, numpy_helper

    outputs, inputs = weight.shape
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])], "linear",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, None, inputs])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, None, outputs])],
        [numpy_helper.from_array(np.ascontiguousarray(weight.T), "w")],
    )
    fp32, quantised = tmp_path / "linear.onnx", tmp_path / "linear_nbits.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(fp32))
    quantize(fp32, quantised)
    model = onnx.load(str(quantised))
    assert [node.op_type for node in model.graph.node] == ["MatMulNBits"]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(quantised), options, providers=["CPUExecutionProvider"])
    return session, {init.name: numpy_helper.to_array(init) for init in model.graph.initializer}


@pytest.mark.parametrize("symmetric", [True, False])
@pytest.mark.parametrize("seed", range(3))
def test_q4_dequantize_is_bit_exact_with_onnxruntime(seed, symmetric, tmp_path):
    """The weights our q4 graphs hold, read back from the file, equal ``q4_dequantize`` bit for bit,
    and the MatMulNBits graph computes the fp32 product with them (to summation order)."""
    from memesearch.ml.onnx_runtime.quantize import quantize_matmuls_4bit

    rng = np.random.default_rng(seed)
    outputs, inputs = int(rng.integers(8, 100)), 32 * int(rng.integers(1, 5))
    weight = (rng.standard_normal((outputs, inputs)) * rng.uniform(0.01, 3)).astype(np.float32)
    weight[:3] = np.round(weight[:3] * 4) / 4  # exact halves after scaling: the rounding rule matters
    session, stored = _matmul_nbits_session(
        weight, lambda source, target: quantize_matmuls_4bit(source, target, symmetric=symmetric), tmp_path)
    packed, scales = stored["w_Q4"], stored["w_scales"]
    q = np.stack([packed & 15, packed >> 4], axis=-1).reshape(outputs, inputs // 32, 32).astype(np.float32)
    if symmetric:
        zero_points = np.full(scales.shape, 8, np.float32)
    else:
        zp = stored["w_zero_points"]
        zero_points = np.stack([zp & 15, zp >> 4], axis=-1).reshape(outputs, -1)[:, : inputs // 32].astype(np.float32)
    from_file = ((q - zero_points[..., None]) * scales[..., None]).reshape(outputs, inputs)
    emulated = int8_reference.q4_dequantize(torch.from_numpy(weight), symmetric=symmetric)
    np.testing.assert_array_equal(emulated.numpy(), from_file)
    assert not np.array_equal(from_file, weight)

    for rows in (1, 7):
        x = rng.standard_normal((1, rows, inputs)).astype(np.float32)
        expected = torch.nn.functional.linear(torch.from_numpy(x), emulated).numpy()
        np.testing.assert_allclose(session.run(None, {"x": x})[0], expected, rtol=1e-5, atol=1e-5)


def _halves(rng, rows: int, inputs: int, extreme: float) -> np.ndarray:
    """Rows of blocks of 32 whose value of largest magnitude is ``extreme`` (the first) and the others
    odd halves j + 0.5: quantised with a scale of 1 (``extreme`` 128 for weights, 127 for
    activations) every other value lies exactly on a half, where the rounding rules part."""
    values = (rng.integers(-127, 127, (rows, inputs)) + 0.5).astype(np.float32)
    values.reshape(rows, -1, 32)[:, :, 0] = extreme * rng.choice([-1.0, 1.0], (rows, inputs // 32))
    return values


@pytest.mark.parametrize("seed", range(4))
def test_q8_dequantize_is_bit_exact_with_onnxruntime(seed, tmp_path):
    """The weights of our per-row int8 decoders (8-bit ``MatMulNBits``), read back from the file, equal
    ``q8_dequantize`` bit for bit: random blocks, blocks on exact halves, an all-zero block."""
    from memesearch.ml.onnx_runtime.quantize import quantize_matmuls_8bit_rows

    rng = np.random.default_rng(seed)
    outputs, inputs = int(rng.integers(8, 100)), 32 * int(rng.integers(1, 5))
    weight = (rng.standard_normal((outputs, inputs)) * rng.uniform(0.01, 3)).astype(np.float32)
    weight[:3] = _halves(rng, 3, inputs, 128) / 64
    weight[3, :32] = 0
    _, stored = _matmul_nbits_session(weight, quantize_matmuls_8bit_rows, tmp_path)
    packed, scales = stored["w_Q8"], stored["w_scales"]
    assert "w_zero_points" not in stored  # symmetric: the kernel's zero point is 128
    from_file = ((packed.astype(np.float32) - 128) * scales[..., None]).reshape(outputs, inputs)
    emulated = int8_reference.q8_dequantize(torch.from_numpy(weight)).numpy()
    np.testing.assert_array_equal(emulated, from_file)
    assert not np.array_equal(from_file, weight)
    # Not vacuous: rounding the halves to even (numpy's rule) stores other weights.
    to_even = np.clip(np.round(weight.reshape(packed.shape) / np.where(scales == 0, 1, scales)[..., None]), -128, 127)
    assert not np.array_equal((to_even * scales[..., None]).reshape(outputs, inputs), from_file)


def test_q8_rows_activation_quantisation_is_bit_exact_with_onnxruntime(tmp_path):
    """``quantize_activation_rows`` equals MLAS's per-row int8 blocks bit for bit. An identity weight
    makes them visible: output k is a_scale x q_k (each 1 of the identity is stored as -128 x scale -1/128)."""
    from memesearch.ml.onnx_runtime.quantize import quantize_matmuls_8bit_rows

    inputs = 256
    session, _ = _matmul_nbits_session(np.eye(inputs, dtype=np.float32), quantize_matmuls_8bit_rows, tmp_path)
    rng = np.random.default_rng(0)
    rows = 300
    # Values a hair off halves of the block scale (amax / 127): the reciprocal's last bit decides.
    amax = rng.uniform(1e-3, 100, (rows, inputs // 32)).astype(np.float32)
    x = ((rng.integers(-127, 127, (rows, inputs // 32, 32)) + 0.5) * (amax / 127)[..., None]).astype(np.float32)
    x[..., 0] = amax * rng.choice([-1, 1], amax.shape)
    x[:20] = (rng.standard_normal((20, inputs // 32, 32)) * amax[:20, :, None]).astype(np.float32)
    x[20:40] = _halves(rng, 20, inputs, 127).reshape(20, -1, 32) / 8
    x[40, :2] = 0  # all-zero blocks: scale 0
    x = x.reshape(1, rows, inputs)

    q, scale = (t.numpy() for t in int8_reference.quantize_activation_rows(torch.from_numpy(x)))
    produced = session.run(None, {"x": x})[0].reshape(q.shape)
    nonzero = np.where(scale == 0, 1, scale)[..., None]
    from_onnx = np.round(produced / nonzero)
    assert np.abs(produced / nonzero - from_onnx).max() < 1e-3  # the recovered q are integers
    np.testing.assert_array_equal(q, from_onnx)
    # Not vacuous: MLAS's rule differs from rounding halves away and from multiplying by 1 / scale.
    blocks = x.reshape(q.shape)
    amax = np.abs(blocks).max(axis=-1, keepdims=True)
    scaled = blocks * (np.float32(127) / np.where(amax == 0, 1, amax))
    assert not np.array_equal(np.sign(scaled) * np.floor(np.abs(scaled) + 0.5), q)
    assert not np.array_equal(np.round(blocks * (np.float32(1) / nonzero)), q)


@pytest.mark.parametrize("seed", range(4))
def test_q8_rows_linear_follows_onnxruntime(seed, tmp_path):
    """One 8-bit ``MatMulNBits`` with accuracy_level 4 against ``q8_rows_linear``: equal up to the order
    in which MLAS adds the blocks' float products, for 1 and 7 rows of very different ranges."""
    from memesearch.ml.onnx_runtime.quantize import quantize_matmuls_8bit_rows

    rng = np.random.default_rng(seed)
    outputs, inputs = int(rng.integers(8, 100)), 32 * int(rng.integers(1, 6))
    weight = (rng.standard_normal((outputs, inputs)) * rng.uniform(0.01, 3)).astype(np.float32)
    session, _ = _matmul_nbits_session(weight, quantize_matmuls_8bit_rows, tmp_path)
    weight_t = torch.from_numpy(weight)
    for rows in (1, 7):
        x = rng.standard_normal((1, rows, inputs)).astype(np.float32)
        x[0, 1:] *= np.array([40, 0.01, 1e3, 1e-3, 1, 5][: rows - 1], dtype=np.float32)[:, None]
        produced = session.run(None, {"x": x})[0]
        emulated = int8_reference.q8_rows_linear(torch.from_numpy(x), weight_t).numpy()
        # Per row: the float error scales with the row's own range, not with the batch's.
        tolerance = 1e-5 * np.abs(emulated).max(axis=-1, keepdims=True)
        np.testing.assert_array_less(np.abs(produced - emulated), np.broadcast_to(tolerance, produced.shape))
        # Not vacuous: the per-tensor int8 emulation (the vision encoder's) is far off here.
        per_tensor = int8_reference.int8_linear(torch.from_numpy(x), weight_t).numpy()
        assert (np.abs(per_tensor - produced) > 100 * tolerance).any()


def test_q8_rows_linear_is_bit_exact_with_power_of_two_scales(tmp_path):
    """With every block scale a power of two all the float work is exact too, in any order: then
    ``q8_rows_linear`` equals ONNX Runtime bit for bit (integer products, block scales, halves)."""
    from memesearch.ml.onnx_runtime.quantize import quantize_matmuls_8bit_rows

    rng = np.random.default_rng(3)
    outputs, inputs, rows = 40, 128, 7
    weight = rng.integers(-127, 128, (outputs, inputs)).astype(np.float32) / 8
    weight.reshape(outputs, -1, 32)[:, :, 0] = -16  # m = -128 / 8: scale 1/8, values exact
    session, _ = _matmul_nbits_session(weight, quantize_matmuls_8bit_rows, tmp_path)
    exponents = np.array([-6, 0, 5, -20, 3, 1, -1], dtype=np.float32)[:, None]
    x = (_halves(rng, rows, inputs, 127) * 2.0**exponents).astype(np.float32)[None]  # a_scale 2**e, halves
    produced = session.run(None, {"x": x})[0]
    x_t, weight_t = torch.from_numpy(x), torch.from_numpy(weight)
    emulated = int8_reference.q8_rows_linear(x_t, weight_t).numpy()
    np.testing.assert_array_equal(emulated, produced)
    assert not np.array_equal(emulated, torch.nn.functional.linear(x_t, weight_t).numpy())


def test_emulation_is_scoped_to_the_context():
    x, weight = torch.randn(1, 3, 8), torch.randn(4, 8)
    plain = torch.nn.functional.linear(x, weight)
    with int8_reference.emulate_ort_int8():
        inside = torch.nn.Linear(8, 4, bias=False).requires_grad_(False)
        inside.weight.copy_(weight)
        quantised = inside(x)
    assert not torch.equal(quantised, plain)
    assert torch.equal(torch.nn.functional.linear(x, weight), plain)


def _onnx_int8_tokens(family: str, exported: Path, image, prompt: str, dtype: str = "int8") -> list[int]:
    onnx_module = importlib.import_module(f"memesearch.ml.families.{family}.onnx_backend")
    captioner = captioner_class(onnx_module, "onnx")(exported, dtype=dtype, threads=1)
    request = CaptionRequest(image=image, prompt=prompt, max_new_tokens=TOKENS)
    return list(captioner.caption([request])[0].token_ids)


@pytest.mark.slow
@pytest.mark.parametrize(("family", "dtype"), [*((family, "int8") for family in FAMILIES), ("smolvlm", "int8-per-row"),
                                             ("smolvlm", "q4")])
def test_onnx_int8_tokens_follow_the_int8_reference(family, dtype, tmp_path, monkeypatch):
    """q4: SmolVLM's int8 vision + 4-bit weight-only decoder, against the reference with the
    decoder's weights 4-bit rounded (same threshold)."""
    monkeypatch.setenv("MEMESEARCH_THREADS", "1")
    # int8-per-row: SmolVLM's int8 with models.yml's ``int8_decoder: per_row`` (batches exactly).
    quantised = {"q4": True} if dtype == "q4" else {"int8": True}
    by_dtype = {"dtype": "q4"} if dtype == "q4" else {}
    if dtype == "int8-per-row":
        quantised["int8_decoder"] = by_dtype["int8_decoder"] = "per_row"
        dtype = "int8"
    tiny = importlib.import_module(f"memesearch.ml.families.{family}.tiny")
    export = importlib.import_module(f"memesearch.ml.families.{family}.export")
    prompt, image = tiny.TINY_PROMPT, fixed_image()
    equal_int8, equal_fp32, emulation_changed_tokens = [], [], False
    for seed in SEEDS:
        checkpoint = tiny.build_tiny_checkpoint(tmp_path / f"ckpt{seed}", seed=seed)
        exported = export.export(checkpoint, tmp_path / f"onnx{seed}", **quantised)
        produced = _onnx_int8_tokens(family, exported, image, prompt, dtype)
        fp32_reference = tiny.reference_generate(checkpoint, [image], prompt, TOKENS)[0]
        int8_tokens = int8_reference.reference_generate(family, checkpoint, [image], prompt, TOKENS, **by_dtype)[0]
        assert len(produced) > 0 and len(int8_tokens) > 0
        equal_int8.append(produced == int8_tokens)
        equal_fp32.append(produced == fp32_reference)
        emulation_changed_tokens |= int8_tokens != fp32_reference
    # The emulation changes the model's output (so agreeing with it is not agreeing with fp32) ...
    assert emulation_changed_tokens
    # ... and the int8 graphs follow it: all 16 tokens equal on at least 4 of 5 seeds (the
    # margin is for ulp-triggered rounding flips, see the module docstring), and clearly
    # more often than they follow the fp32 reference.
    assert sum(equal_int8) >= len(SEEDS) - 1, (equal_int8, equal_fp32)
    assert sum(equal_int8) > sum(equal_fp32), (equal_int8, equal_fp32)

