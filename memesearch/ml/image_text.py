"""The image-text embedding model of visual search, as the rest of the app calls it.

``load_image_text_embedder(spec, settings)`` returns an :class:`ImageTextEmbedder` with two
methods, ``embed_images`` (PIL images) and ``embed_texts`` (strings), both returning
L2-normalised float32 rows of one shared space, so a text query ranks images by cosine.

Backends are tried in the spec's order (``onnx`` then ``torch`` for CLIP), as the caption
chain does: a backend is skipped when its packages or files are missing, and a backend that
fails while running (a corrupt graph) falls through to the next one for that call. Nothing
heavy happens before the first call: ONNX opens each tower's graph on first use, and the
core install never imports torch unless the ONNX files are missing and torch is installed.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from PIL import Image

from memesearch.config import Settings
from memesearch.errors import ConfigError, InvalidInputError, ModelUnavailableError, require
from memesearch.ml import chain, model_files
from memesearch.ml.failures import BackendRunError, failure_reason, user_fix
from memesearch.ml.registry import ModelSpec

log = logging.getLogger(__name__)


@dataclass
class OpenedBackend:
    model: object  # ClipOnnxEmbedder or ClipTorchEmbedder: embed_images / embed_texts / dim
    dtype: str
    revision: str


def open_onnx(spec: ModelSpec, settings: Settings, dtype: str | None) -> OpenedBackend:
    from memesearch.ml.families.clip.onnx_backend import ClipOnnxEmbedder

    chosen = model_files.onnx_dtype(spec, dtype)
    missing = model_files.missing_files(spec, settings.models_dir, chosen)
    if missing:
        directory = model_files.model_dir(spec, settings.models_dir)
        raise model_files.MissingFilesError(
            f"{len(missing)} file(s) missing in {directory}: {', '.join(missing)}",
            hint=f"memesearch models pull {spec.id}",
        )
    model = ClipOnnxEmbedder(model_files.model_dir(spec, settings.models_dir), dtype=chosen, threads=settings.threads or None)
    model.ensure_loaded()  # config, preprocessing settings and tokenizer; the graphs open on first use
    return OpenedBackend(model, chosen, spec.sources.onnx.revision)


def open_torch(spec: ModelSpec, settings: Settings, dtype: str | None) -> OpenedBackend:
    if spec.sources.torch is None:
        raise ConfigError(f"model {spec.id!r} has no torch source")
    require("torch", extra="torch", purpose="CLIP on PyTorch")
    require("transformers", extra="torch", purpose="CLIP on PyTorch")
    from memesearch.ml.families.clip.torch_backend import ClipTorchEmbedder

    where, revision = chain.torch_location(spec, settings)
    model = ClipTorchEmbedder(where, revision=revision, threads=settings.threads or None)
    model.ensure_loaded()
    return OpenedBackend(model, "fp32", spec.sources.torch.revision)


Opener = Callable[[ModelSpec, Settings, "str | None"], OpenedBackend]
OPENERS: dict[str, Opener] = {"onnx": open_onnx, "torch": open_torch}


class ImageTextEmbedder:
    """Images and texts into one vector space, with the spec's backend fallback."""

    def __init__(self, spec: ModelSpec, settings: Settings, backends: list[str], *, dtype: str | None = None,
                 openers: dict[str, Opener] | None = None) -> None:
        self.spec = spec
        self.model_id = spec.id
        self.settings = settings
        self.backends = backends
        self.requested_dtype = dtype
        self.openers = openers or OPENERS
        self._opened: dict[str, OpenedBackend] = {}
        self._lock = threading.Lock()
        #: backend -> why it could not be opened, or its latest failure while running (exceptions:
        #: the reason and its fix stay apart until they are shown).
        self.failures: dict[str, BaseException] = {}
        self.backend: str | None = None
        self.dtype: str | None = None

    @property
    def dim(self) -> int:
        opened = self._opened.get(self.backend or "")
        return int(opened.model.dim) if opened else 0

    def _open(self, backend: str) -> OpenedBackend | None:
        with self._lock:
            if backend in self._opened:
                return self._opened[backend]
            if backend in self.failures:
                return None
            try:
                opened = self.openers[backend](self.spec, self.settings, self.requested_dtype if backend == "onnx" else None)
            except Exception as exc:  # any failure to open means "try the next backend"
                self.failures[backend] = exc
                log.info("visual model %s: backend %s skipped: %s", self.spec.id, backend, failure_reason(exc))
                return None
            self._opened[backend] = opened
            return opened

    def ensure_loaded(self) -> None:
        """Open the first backend that works (cheap for ONNX), or raise ModelUnavailableError."""
        for backend in self.backends:
            opened = self._open(backend)
            if opened is not None:
                self.backend, self.dtype = backend, opened.dtype
                return
        raise self.unavailable_error()

    def unavailable_error(self) -> ModelUnavailableError:
        lines = [f"  - {backend}: {failure_reason(self.failures[backend]) if backend in self.failures else 'not tried'}"
                 for backend in self.backends]
        fixes = [fix for fix in map(user_fix, self.failures.values()) if fix] or [f"memesearch models pull {self.spec.id}"]
        return ModelUnavailableError(
            f"no backend could run visual search model {self.spec.id!r}:\n" + "\n".join(lines),
            hint="; or ".join(dict.fromkeys(fixes)),
        )

    def _run(self, method: str, items: Sequence) -> np.ndarray:
        if self.backend is None:
            self.ensure_loaded()
        start = self.backends.index(self.backend)
        for backend in self.backends[start:]:
            opened = self._open(backend)
            if opened is None:
                continue
            try:
                vectors = getattr(opened.model, method)(items)
            except InvalidInputError:
                raise  # the input is the problem: another backend would refuse it too
            except Exception as exc:
                self.failures[backend] = BackendRunError("embedding", exc)
                log.warning("visual model %s: backend %s failed: %s", self.spec.id, backend, failure_reason(exc))
                continue
            self.backend, self.dtype = backend, opened.dtype
            return vectors
        raise self.unavailable_error()

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """L2-normalised float32, shape (len(images), dim)."""
        return self._run("embed_images", list(images))

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32, shape (len(texts), dim)."""
        if isinstance(texts, str):
            raise InvalidInputError("embed_texts takes a list of texts, not one string")
        return self._run("embed_texts", list(texts))

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_texts([text])[0]


def load_image_text_embedder(spec: ModelSpec, settings: Settings, *, backend: str | None = None,
                             dtype: str | None = None, openers: dict[str, Opener] | None = None) -> ImageTextEmbedder:
    """The visual search model of ``spec`` with its first working backend opened."""
    if not spec.is_image_text:
        raise ConfigError(
            f"{spec.id} ({spec.family}) is a caption model, not an image-text embedding model",
            hint="choose a model of family clip, e.g. clip-vit-b-32 (see `memesearch models list`)",
        )
    backends = [b for b in spec.backends if b in (openers or OPENERS)]
    if backend is not None:
        if backend not in backends:
            raise ConfigError(f"{spec.id} has no backend {backend!r}", hint=f"one of: {', '.join(backends)}")
        backends = [backend]
    embedder = ImageTextEmbedder(spec, settings, backends, dtype=dtype, openers=openers)
    embedder.ensure_loaded()
    return embedder
