"""Does this CPU's ``MatMulNBits`` compute each row of a batch alone? Checked once per process.

Batched captions are only allowed when a meme's caption cannot depend on the memes batched
with it. Our 8-bit per-row decoders (``quantize.quantize_matmuls_8bit_rows``) are built for
that, but the guarantee lives in MLAS's kernels, which differ by CPU (AVX2, AVX-512 VNNI, AMX,
NEON) and by version: with blocks of 128 the one-row kernel rounds differently from the
many-row one (docs/BENCHMARKS.md). So before batching, a few random rows go through one such
node alone and together, at the decoder's block size, on this CPU and this onnxruntime; any
difference in any bit turns batching off (one meme per call, as for per-tensor int8).
"""

from __future__ import annotations

import functools
import logging

log = logging.getLogger(__name__)

#: Shapes like a small decoder's projections (hidden 576 -> 576 / 1536 and back); K spans
#: several blocks so that the blocks' partial sums are added in the kernel's own order.
PROBE_SHAPES = ((576, 576), (1536, 576))
PROBE_ROWS = 5


@functools.lru_cache(maxsize=None)
def matmul_nbits_rows_independent(bits: int, block_size: int, accuracy_level: int) -> bool:
    """True when ``MatMulNBits`` with these attributes gives every row bit for bit the same result
    alone (M = 1) as in a batch of ``PROBE_ROWS`` rows, for each probe shape."""
    try:
        return all(_probe(k, n, bits, block_size, accuracy_level) for k, n in PROBE_SHAPES)
    except Exception as exc:  # an onnxruntime without the op or these attributes: no batching
        log.warning("MatMulNBits row probe failed (%s: %s); quantised captions run one meme per call",
                    type(exc).__name__, exc)
        return False


def _probe(k: int, n: int, bits: int, block_size: int, accuracy_level: int) -> bool:
    import numpy as np
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from memesearch.ml.onnx_runtime.quantize import nbits_blocks

    rng = np.random.default_rng(16)
    weight = (rng.standard_normal((k, n)) * 0.05).astype(np.float32)
    packed, scales, _ = nbits_blocks(weight, bits, block_size)
    node = helper.make_node("MatMulNBits", ["A", "B", "scales"], ["Y"], domain="com.microsoft",
                            K=k, N=n, bits=bits, block_size=block_size, accuracy_level=accuracy_level)
    graph = helper.make_graph(
        [node], "row_probe", [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["M", k])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, ["M", n])],
        [numpy_helper.from_array(packed, "B"), numpy_helper.from_array(scales, "scales")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    rows = rng.standard_normal((PROBE_ROWS, k)).astype(np.float32)
    rows[1] *= 40  # rows of very different ranges: a shared scale would show
    together = session.run(None, {"A": rows})[0]
    alone = np.concatenate([session.run(None, {"A": rows[i : i + 1]})[0] for i in range(PROBE_ROWS)])
    return bool(np.array_equal(together, alone))
