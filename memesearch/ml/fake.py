"""Deterministic stand-ins at the model boundary, for tests and ``--demo``.

They are real implementations of the model interfaces (so everything above them
runs unchanged), just without weights: the caption is derived from the pixels,
the embedding from the words. Same input, same output, on every machine.
"""

from __future__ import annotations

import hashlib
import re
import threading
import time

import numpy as np

from memesearch.errors import ModelUnavailableError
from memesearch.ml.base import CaptionRequest, CaptionResult, Captioner, Embedder

_COLOUR_NAMES = {
    "black": (0, 0, 0),
    "white": (255, 255, 255),
    "red": (220, 40, 40),
    "green": (40, 170, 60),
    "blue": (40, 80, 220),
    "yellow": (240, 220, 50),
    "orange": (240, 140, 30),
    "purple": (130, 50, 170),
    "grey": (128, 128, 128),
    "brown": (120, 80, 40),
}


def colour_name(rgb: np.ndarray) -> str:
    """The nearest named colour to an RGB triple."""
    distances = {name: float(np.sum((rgb - np.array(ref)) ** 2)) for name, ref in _COLOUR_NAMES.items()}
    return min(distances, key=distances.__getitem__)


class FakeCaptioner(Captioner):
    """Describes mean colour, shape and a content hash: "a mostly red wide meme ...".

    ``fail_every=N`` makes every Nth image (counted per instance) raise a
    ModelUnavailableError, and ``delay_s`` sleeps per image, so the jobs layer
    can be tested against slow and flaky models.
    """

    backend = "fake"
    dtype = "none"

    def __init__(self, *, model_id: str = "fake", delay_s: float = 0.0, fail_every: int = 0) -> None:
        super().__init__()
        self.model_id = model_id
        self.delay_s = delay_s
        self.fail_every = fail_every
        self._count = 0
        self._count_lock = threading.Lock()

    def _caption_batch(self, requests: list[CaptionRequest]) -> list[CaptionResult]:
        return [self._describe(request) for request in requests]

    def _describe(self, request: CaptionRequest) -> CaptionResult:
        with self._count_lock:
            self._count += 1
            number = self._count
        if self.delay_s:
            time.sleep(self.delay_s)
        if self.fail_every and number % self.fail_every == 0:
            raise ModelUnavailableError(f"fake captioner: injected failure on image #{number}")
        image = request.image.convert("RGB")
        pixels = np.asarray(image, dtype=np.float64).reshape(-1, 3)
        width, height = image.size
        shape = "square" if 0.9 <= width / height <= 1.1 else ("wide" if width > height else "tall")
        digest = hashlib.sha256(image.tobytes()).hexdigest()[:8]
        text = f"a mostly {colour_name(pixels.mean(axis=0))} {shape} meme, {width}x{height} pixels, id {digest}"
        words = text.split()[: request.max_new_tokens]
        return CaptionResult(text=" ".join(words), token_ids=[_word_id(w) for w in words])


_WORD_RE = re.compile(r"\w+", re.UNICODE)


def _word_id(word: str, buckets: int = 2**31 - 1) -> int:
    # blake2b, not hash(): Python's str hash is salted per process.
    return int.from_bytes(hashlib.blake2b(word.lower().encode(), digest_size=8).digest(), "little") % buckets


class FakeEmbedder(Embedder):
    """Hashed bag of words: texts sharing words get similar vectors, deterministically."""

    model_id = "fake-bow-384"
    dim = 384

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        vectors = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in _WORD_RE.findall(text.lower()):
                bucket = _word_id(word)
                # The sign bit spreads collisions out instead of piling them up.
                vectors[row, bucket % self.dim] += 1.0 if (bucket >> 20) & 1 else -1.0
            if not vectors[row].any():
                vectors[row, 0] = 1.0  # empty text: a fixed unit vector, never NaN
        return vectors
