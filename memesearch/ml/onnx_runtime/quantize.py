"""Dynamic int8 quantisation of MatMul weights: the one way all our int8 graphs are made.

Weights are symmetric int8 per tensor, activations are quantised at run time. The weights
use 7 bits (``reduce_range``): on x86 CPUs without VNNI (AVX2, AVX-512F) ONNX Runtime's
u8 × s8 kernels add pairs of products in saturating int16 (vpmaddubsw). With 8-bit weights
that overflowed: on an AVX2 EPYC, 2 of 7,540 outputs of one random MatMul were off by up to
2.6, and CLIP's attention lost cosine 0.9998 against the exact int8 product. With 7 bits it
cannot overflow (2 × 255 × 64 < 32767), so int8 results are the same on every CPU and the
int8 reference (ml/families/common/int8_reference.py) matches them bit for bit. uint8 weights are
exact too but ran 1.6× slower (CLIP, bench/bench_clip.py).
"""

from __future__ import annotations

from pathlib import Path

REDUCE_RANGE = True


def quantize_matmuls(source: Path | str, target: Path | str) -> None:
    """Write ``target``: ``source`` with every MatMul's weight quantised to int8 (7 bits)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8,
                     reduce_range=REDUCE_RANGE)
