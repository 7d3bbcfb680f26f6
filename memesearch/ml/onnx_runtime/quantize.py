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
    from onnxruntime.quantization import QuantType, quantize_dynamic

    quantize_dynamic(str(source), str(target), op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8,
                     reduce_range=REDUCE_RANGE)


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
