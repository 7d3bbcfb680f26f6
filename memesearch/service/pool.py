"""Loaded models of the service: lazy, loaded once under a per-model lock, unloaded when idle.

Keys are ``(kind, name)`` with kind ``embed`` | ``ocr`` | ``caption`` | ``image_text``. A model in
use is never unloaded; an idle one is dropped after ``ttl_s`` (0 = never) so a
service that served a big caption model once does not hold its memory forever.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field

from memesearch.config import Settings
from memesearch.errors import InvalidInputError, NotFoundError

log = logging.getLogger(__name__)

KINDS = ("embed", "ocr", "caption", "image_text")
OCR_ENGINE_NAME = "rapidocr"


@dataclass
class Entry:
    model: object
    backend: str
    loaded_at: float
    last_used: float
    load_s: float
    in_use: int = 0


@dataclass
class ModelPool:
    settings: Settings
    ttl_s: float = 300.0
    _entries: dict[tuple[str, str], Entry] = field(default_factory=dict)
    _key_locks: dict[tuple[str, str], threading.Lock] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    #: How many times each key was loaded (tests check "never twice at once").
    load_counts: dict[tuple[str, str], int] = field(default_factory=dict)

    def _key_lock(self, key: tuple[str, str]) -> threading.Lock:
        with self._lock:
            return self._key_locks.setdefault(key, threading.Lock())

    def _get(self, key: tuple[str, str]) -> Entry:
        with self._key_lock(key):  # a second request for the same model waits for the first load
            entry = self._entries.get(key)
            if entry is None:
                started = time.perf_counter()
                model, backend = build_model(self.settings, *key)
                now = time.time()
                entry = Entry(model, backend, now, now, time.perf_counter() - started)
                with self._lock:
                    self._entries[key] = entry
                    self.load_counts[key] = self.load_counts.get(key, 0) + 1
                log.info("loaded %s model %s (%s) in %.1fs", key[0], key[1], backend, entry.load_s)
            with self._lock:
                entry.in_use += 1
            return entry

    @contextmanager
    def use(self, kind: str, name: str) -> Iterator[object]:
        if kind not in KINDS:
            raise InvalidInputError(f"unknown model kind {kind!r}")
        entry = self._get((kind, name))
        try:
            yield entry.model
        finally:
            with self._lock:
                entry.in_use -= 1
                entry.last_used = time.time()

    def preload(self, names: list[str]) -> None:
        for name in names:
            with self.use(*classify_name(name)):
                pass

    def sweep(self, now: float | None = None) -> list[tuple[str, str]]:
        """Unload models idle longer than the TTL; returns what was unloaded."""
        if self.ttl_s <= 0:
            return []
        now = time.time() if now is None else now
        with self._lock:
            expired = [k for k, e in self._entries.items() if e.in_use == 0 and now - e.last_used > self.ttl_s]
            for key in expired:
                del self._entries[key]
        for key in expired:
            log.info("unloaded idle %s model %s", *key)
        return expired

    def loaded(self) -> list[dict]:
        with self._lock:
            items = list(self._entries.items())
        return [
            {"kind": kind, "name": name, "backend": e.backend, "loaded_at": e.loaded_at, "last_used": e.last_used,
             "load_s": round(e.load_s, 3), "in_use": e.in_use}
            for (kind, name), e in items
        ]


def classify_name(name: str) -> tuple[str, str]:
    """A preload entry: ``ocr``, an embedder name, or a caption model id (``kind:name`` also works)."""
    from memesearch.ml.factory import TEXT_EMBEDDERS

    if ":" in name:
        kind, _, rest = name.partition(":")
        return kind, rest
    if name == OCR_ENGINE_NAME or name == "ocr":
        return "ocr", OCR_ENGINE_NAME
    if name in TEXT_EMBEDDERS:
        return "embed", name
    if is_image_text_model(name):
        return "image_text", name
    return "caption", name


def is_image_text_model(name: str, home=None) -> bool:
    """Whether ``name`` is a visual search model of the registry (family clip)."""
    from memesearch.errors import MemeSearchError
    from memesearch.ml.registry import get_spec

    try:
        return get_spec(name, home).is_image_text
    except MemeSearchError:
        return False


def build_model(settings: Settings, kind: str, name: str) -> tuple[object, str]:
    """Build and load one model; errors propagate (the endpoint turns them into 4xx/500)."""
    threads = settings.threads or None
    if kind == "embed":
        from memesearch.ml.factory import TEXT_EMBEDDERS, text_embedder

        if name not in TEXT_EMBEDDERS:
            raise NotFoundError(f"unknown embedder {name!r}", hint=f"available: {', '.join(sorted(TEXT_EMBEDDERS))}")

        embedder = text_embedder(name, settings.models_dir / name, threads=threads)
        embedder.ensure_loaded()
        return embedder, embedder.backend
    if kind == "ocr":
        if name != OCR_ENGINE_NAME:
            raise NotFoundError(f"unknown OCR engine {name!r} (available: {OCR_ENGINE_NAME})")
        from memesearch.ml.ocr import RapidOcrEngine

        engine = RapidOcrEngine(threads=threads, min_confidence=settings.ocr_min_confidence,
                                models_dir=settings.models_dir, int8_recognition=settings.ocr_int8_recognition)
        engine.ensure_loaded()
        return engine, engine.backend
    if kind == "image_text":
        from memesearch.ml.factory import load_image_text_embedder

        embedder = load_image_text_embedder(name, settings)
        return embedder, embedder.backend
    from memesearch.ml.factory import load_captioner

    captioner = load_captioner(name, settings)
    return captioner, captioner.backend
