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


def quantize_matmuls_4bit(source: Path | str, target: Path | str, *, block_size: int = Q4_BLOCK_SIZE,
                          symmetric: bool = True, accuracy_level: int = Q4_ACCURACY_LEVEL) -> None:
    """Write ``target``: ``source`` with every MatMul by a 2-D fp32 weight as a 4-bit ``MatMulNBits``.

    The weights go through onnxruntime's own block quantiser (``quantize_matmul_4bits``, the C++
    routine ``MatMulNBitsQuantizer`` calls) but the graph is rewritten here: the Python wrapper
    needs ``onnx_ir``, which the export extra does not install. Only the default ``accuracy_level``
    has a parity reference; level 4 (int8 activations per block, faster on VNNI CPUs) is for
    benchmarks (docs/BENCHMARKS.md, Issue 16 captions)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper
    from onnxruntime.capi._pybind_state import quantize_matmul_4bits

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
        b = numpy_helper.to_array(weight)
        rows, cols = b.shape  # K, N
        k_blocks = (rows + block_size - 1) // block_size
        padded = np.zeros((k_blocks * block_size, cols), dtype=np.float32)
        padded[:rows] = b
        packed = np.zeros((cols, k_blocks, block_size // 2), dtype=np.uint8)
        scales = np.zeros((cols, k_blocks), dtype=np.float32)
        zero_points = np.zeros((cols, (k_blocks + 1) // 2), dtype=np.uint8)
        quantize_matmul_4bits(packed, padded, scales, zero_points, block_size, cols, rows, symmetric)
        stem = weight.name
        extra = [numpy_helper.from_array(packed, f"{stem}_Q4"), numpy_helper.from_array(scales, f"{stem}_scales")]
        if not symmetric:
            extra.append(numpy_helper.from_array(zero_points, f"{stem}_zero_points"))
        graph.initializer.extend(extra)
        nodes.append(onnx.helper.make_node(
            "MatMulNBits", [node.input[0], *(t.name for t in extra)], list(node.output), name=f"{node.name}_Q4",
            domain="com.microsoft", K=rows, N=cols, bits=4, block_size=block_size, accuracy_level=accuracy_level,
        ))
        consumers[weight.name] -= 1
        if consumers[weight.name] == 0:
            graph.initializer.remove(weight)
    del graph.node[:]
    graph.node.extend(nodes)
    if not any(opset.domain == "com.microsoft" for opset in model.opset_import):
        model.opset_import.append(onnx.helper.make_opsetid("com.microsoft", 1))
    onnx.save(model, str(target))
