"""Creating onnxruntime sessions the same way everywhere."""

from __future__ import annotations

import os
from pathlib import Path

from memesearch.errors import ModelUnavailableError


def default_threads() -> int:
    """Intra-op threads: MEMESEARCH_THREADS, else all cores (ORT's own default)."""
    value = os.environ.get("MEMESEARCH_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else 0


def open_session(path: Path | str, *, threads: int | None = None):
    """Open an ONNX model on the CPU; a missing or corrupt file becomes a clear error."""
    import onnxruntime as ort

    path = Path(path)
    if not path.is_file():
        raise ModelUnavailableError(f"ONNX file not found: {path}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = default_threads() if threads is None else threads
    options.inter_op_num_threads = 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.log_severity_level = 3  # ORT warnings about unused initialisers are noise for users
    try:
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
        raise ModelUnavailableError(
            f"cannot load ONNX model {path}: {exc}",
            hint="the file may be truncated or corrupt; download it again with `memesearch models pull`",
        ) from exc
