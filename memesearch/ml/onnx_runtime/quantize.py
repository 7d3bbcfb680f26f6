"""Dynamic int8 quantisation of MatMul weights: the one way all our int8 graphs are made.

Weights are symmetric int8 per tensor, activations are quantised at run time. The weights
use 7 bits (``reduce_range``): on x86 CPUs without VNNI (AVX2, AVX-512F) ONNX Runtime's
u8 × s8 kernels add pairs of products in saturating int16 (vpmaddubsw). With 8-bit weights
that overflowed: on an AVX2 EPYC, 2 of 7,540 outputs of one random MatMul were off by up to
2.6, and CLIP's attention lost cosine 0.9998 against the exact int8 product. With 7 bits it
cannot overflow (2 × 255 × 64 < 32767), so int8 results are the same on every CPU and the
int8 reference (ml/families/common/int8_reference.py) matches them bit for bit. uint8 weights are
exact too but ran 1.6× slower (CLIP, bench/bench_clip.py). CLIP first rewrites its patch
embedding Conv as a MatMul so that it is quantised too (ml/families/clip/patch_matmul.py);
SmolVLM's exporter fuses the attention of its int8 vision encoder afterwards (ml/onnx_runtime/attention_fusion.py);
the other families' graphs go through this function unchanged.
"""

from __future__ import annotations

import fcntl
import os
import tempfile
from collections.abc import Callable
from pathlib import Path

REDUCE_RANGE = True


def quantize_matmuls(source: Path | str, target: Path | str) -> None:
    """Write ``target``: ``source`` with every MatMul's weight quantised to int8 (7 bits)."""
    from onnx import TensorProto
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # DefaultTensorType: onnx's shape inference knows no type for the outputs of ORT's own ops
    # (SmolVLM's GroupQueryAttention decoder, smolvlm/decoder_graph.py); all our graphs are fp32.
    quantize_dynamic(str(source), str(target), op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8,
                     reduce_range=REDUCE_RANGE, extra_options={"DefaultTensorType": TensorProto.FLOAT})


def write_atomically(target: Path, write: Callable[[str], None]) -> Path:
    """Run ``write(partial path)`` next to ``target``, then move it into place: a reader never
    sees half a graph, and a failed write leaves nothing behind."""
    fd, partial = tempfile.mkstemp(prefix=target.name + ".", suffix=".partial", dir=target.parent)
    os.close(fd)
    try:
        write(partial)
        os.chmod(partial, 0o644)
        os.replace(partial, target)
    finally:
        Path(partial).unlink(missing_ok=True)
    return target


def derive_once(target: Path, write: Callable[[str], None]) -> Path:
    """``target``, written by ``write`` (atomically) unless it exists; a second process wanting it
    meanwhile waits for the first one's file instead of writing its own."""
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.with_name(target.name + ".lock"), "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not target.is_file():
            write_atomically(target, write)
    return target


#: 4-bit weight-only quantisation of the ``q4`` decoders: blocks of 32 weights along K, symmetric.
Q4_BLOCK_SIZE = 32
#: accuracy_level 1: MatMulNBits dequantises and multiplies in fp32 (no activation quantisation),
#: so a PyTorch linear with the dequantised weight computes the same thing (int8_reference.py).
Q4_ACCURACY_LEVEL = 1

#: SmolVLM's per-row int8 decoders (issue 16, bulk describe; models.yml ``int8_decoder: per_row``):
#: 8-bit weights in blocks of 32 along K, and
#: accuracy_level 4, where MLAS quantises the activations to int8 per row and per block of 32
#: (``QuantizeARow_CompInt8``) and multiplies with VNNI. A row's result then depends on that row
#: alone, so memes batched together get the captions they get one at a time; the per-tensor
#: activation scale of ``quantize_matmuls`` mixes the rows of a batch. Blocks of 128 are not
#: used: there MLAS's one-row kernel rounds differently from its many-row one
#: (tests/test_row_exact.py); ``onnx_runtime/row_exact.py`` checks the rows at run time.
Q8_BLOCK_SIZE = 32
Q8_ACCURACY_LEVEL = 4
#: Model metadata our per-row quantiser sets: "bits:block_size:accuracy_level" of its MatMulNBits,
#: which ``onnx_runtime/row_exact.py`` probes on this CPU before memes are batched.
ROWS_INDEPENDENT_KEY = "memesearch.rows_independent"


def quantize_matmuls_4bit(source: Path | str, target: Path | str, *, block_size: int = Q4_BLOCK_SIZE,
                          symmetric: bool = True, accuracy_level: int = Q4_ACCURACY_LEVEL) -> None:
    """Write ``target``: ``source`` with every MatMul by a 2-D fp32 weight as a 4-bit ``MatMulNBits``.
    Only the default ``accuracy_level`` has a parity reference; level 4 (int8 activations per
    block, faster on VNNI CPUs) is for benchmarks (docs/BENCHMARKS.md, Issue 16 captions)."""
    quantize_matmuls_nbits(source, target, bits=4, block_size=block_size, symmetric=symmetric,
                           accuracy_level=accuracy_level)


def quantize_matmuls_8bit_rows(source: Path | str, target: Path | str) -> None:
    """Write ``target``: ``source`` with every MatMul by a 2-D fp32 weight as an 8-bit ``MatMulNBits``
    that quantises its activations per row (see ``Q8_BLOCK_SIZE``), marked rows-independent."""
    quantize_matmuls_nbits(source, target, bits=8, block_size=Q8_BLOCK_SIZE, symmetric=True,
                           accuracy_level=Q8_ACCURACY_LEVEL,
                           metadata={ROWS_INDEPENDENT_KEY: f"8:{Q8_BLOCK_SIZE}:{Q8_ACCURACY_LEVEL}"})


def per_row_matmuls(model_metadata: dict[str, str]) -> tuple[int, int, int] | None:
    """(bits, block_size, accuracy_level) of the MatMulNBits of a graph our per-row quantiser made,
    from its custom metadata (``session.get_modelmeta().custom_metadata_map``); None for any other graph."""
    try:
        bits, block_size, level = (int(part) for part in model_metadata[ROWS_INDEPENDENT_KEY].split(":"))
    except (KeyError, ValueError):
        return None
    return bits, block_size, level


def quantize_matmuls_nbits(source: Path | str, target: Path | str, *, bits: int, block_size: int, symmetric: bool,
                           accuracy_level: int, metadata: dict[str, str] | None = None) -> None:
    """Write ``target``: ``source`` with every MatMul by a 2-D fp32 weight as a ``bits``-bit ``MatMulNBits``.

    The weights go through onnxruntime's own block quantiser (``quantize_matmul_{4,8}bits``, the C++
    routines ``MatMulNBitsQuantizer`` calls) but the graph is rewritten here: the Python wrapper
    needs ``onnx_ir``, which the export extra does not install."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    initializers = {init.name: init for init in graph.initializer}
    consumers: dict[str, int] = {}
    for node in graph.node:
        for name in node.input:
            consumers[name] = consumers.get(name, 0) + 1
    nodes = []
    for node in graph.node:
        weight = initializers.get(node.input[1]) if node.op_type == "MatMul" else None
        if weight is None or len(weight.dims) != 2 or weight.data_type != onnx.TensorProto.FLOAT:
            nodes.append(node)
            continue
        rows, cols = weight.dims  # K, N
        packed, scales, zero_points = nbits_blocks(numpy_helper.to_array(weight), bits, block_size, symmetric)
        stem = weight.name
        extra = [numpy_helper.from_array(packed, f"{stem}_Q{bits}"), numpy_helper.from_array(scales, f"{stem}_scales")]
        if not symmetric:
            extra.append(numpy_helper.from_array(zero_points, f"{stem}_zero_points"))
        graph.initializer.extend(extra)
        nodes.append(onnx.helper.make_node(
            "MatMulNBits", [node.input[0], *(t.name for t in extra)], list(node.output), name=f"{node.name}_Q{bits}",
            domain="com.microsoft", K=rows, N=cols, bits=bits, block_size=block_size, accuracy_level=accuracy_level,
        ))
        consumers[weight.name] -= 1
        if consumers[weight.name] == 0:
            graph.initializer.remove(weight)
    del graph.node[:]
    graph.node.extend(nodes)
    if not any(opset.domain == "com.microsoft" for opset in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    if metadata:
        onnx.helper.set_model_props(model, {**{prop.key: prop.value for prop in model.metadata_props}, **metadata})
    onnx.save(model, str(target))


def nbits_blocks(weight, bits: int, block_size: int, symmetric: bool = True):
    """(packed, scales, zero_points) of a (K, N) fp32 weight as ``MatMulNBits`` wants them, made by
    onnxruntime's own block quantiser (``quantize_matmul_{4,8}bits``)."""
    import numpy as np
    from onnxruntime.capi import _pybind_state

    if bits not in (4, 8):
        raise ValueError(f"MatMulNBits with {bits} bits is not supported here")
    quantize = _pybind_state.quantize_matmul_4bits if bits == 4 else _pybind_state.quantize_matmul_8bits
    per_byte = 8 // bits
    rows, cols = weight.shape
    k_blocks = (rows + block_size - 1) // block_size
    padded = np.zeros((k_blocks * block_size, cols), dtype=np.float32)
    padded[:rows] = weight
    packed = np.zeros((cols, k_blocks, block_size // per_byte), dtype=np.uint8)
    scales = np.zeros((cols, k_blocks), dtype=np.float32)
    zero_points = np.zeros((cols, (k_blocks + per_byte - 1) // per_byte), dtype=np.uint8)
    quantize(packed, padded, scales, zero_points, block_size, cols, rows, symmetric)
    return packed, scales, zero_points
