"""Builds the core objects from Settings, lazily, for the CLI, the web app and workers.

Nothing heavy happens at construction: the store opens on first use and models
load on first inference, so `memesearch status` stays instant.
"""

from __future__ import annotations

import threading
import time
from functools import cached_property
from typing import TYPE_CHECKING

from memesearch.config import Settings

if TYPE_CHECKING:
    from memesearch.store.base import Store

#: How often a missing visual search model is looked for again (files only, no loading).
VISUAL_RECHECK_S = 30.0


class Core:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def store(self) -> Store:
        from memesearch.store import open_store

        return open_store(self.settings)

    @cached_property
    def ml_client(self):
        """The remote backend's HTTP client, when MEMESEARCH_ML_URLS is set (else None: in-process)."""
        if not self.settings.ml_urls:
            return None
        from memesearch.ml.remote import client_from_settings

        return client_from_settings(self.settings)

    @cached_property
    def embedder(self):
        if self.ml_client is not None:
            from memesearch.ml.remote import RemoteEmbedder

            return RemoteEmbedder(self.ml_client, self.settings.embed_model)
        from memesearch.ml.factory import configured_text_embedder

        return configured_text_embedder(self.settings)

    @cached_property
    def ocr(self):
        if not self.settings.ocr_enabled:
            return None
        if self.ml_client is not None:
            from memesearch.ml.remote import RemoteOcrEngine

            return RemoteOcrEngine(self.ml_client)
        from memesearch.ml.ocr import RapidOcrEngine

        return RapidOcrEngine(threads=self.settings.threads or None, min_confidence=self.settings.ocr_min_confidence,
                              models_dir=self.settings.models_dir, int8_recognition=self.settings.ocr_int8_recognition)

    @property
    def visual(self):
        """The image-text model of visual search (memesearch.visual.model), or None when it is
        turned off or not installed: then search works by words only. While it is missing, the
        answer is re-checked every VISUAL_RECHECK_S, so a model pulled from the web app is used
        without a restart."""
        from memesearch.visual.model import load_visual_model

        state = self.__dict__
        checked = state.get("_visual_checked")
        if checked is not None and (state["_visual"] is not None or time.monotonic() < checked + VISUAL_RECHECK_S):
            return state["_visual"]
        with state.setdefault("_visual_lock", threading.Lock()):
            if state.get("_visual_checked") == checked:  # not refreshed by another thread meanwhile
                state["_visual"] = load_visual_model(self.settings, self.ml_client)
                state["_visual_checked"] = time.monotonic()
        return state["_visual"]

    @cached_property
    def pipeline(self):
        from memesearch.pipeline import Pipeline

        return Pipeline(self.store, self.settings, ocr=self.ocr, embedder=self.embedder)

    @cached_property
    def search_engine(self):
        from memesearch.search import SearchEngine

        return SearchEngine(self.store, self.embedder, visual=lambda: self.visual)

    @cached_property
    def jobs(self):
        """Bulk runs (memesearch.jobs.manager.JobManager): start, progress, cancel, retry."""
        from memesearch.jobs.manager import JobManager

        return JobManager(self)

    def captioner(self, model_id: str):
        """A loaded caption model, cached per id: remote when ml_urls is set, else the local chain."""
        cache = self.__dict__.setdefault("_captioners", {})
        with self.__dict__.setdefault("_captioners_lock", threading.Lock()):
            if model_id not in cache:
                if self.ml_client is not None:
                    from memesearch.ml.remote import RemoteCaptioner

                    cache[model_id] = RemoteCaptioner(self.ml_client, model_id)
                else:
                    from memesearch.ml.factory import load_captioner

                    cache[model_id] = load_captioner(model_id, self.settings)
            return cache[model_id]

    def loaded_captioner(self, model_id: str):
        """The caption model ``captioner(model_id)`` has loaded already, or None (loads nothing)."""
        return self.__dict__.get("_captioners", {}).get(model_id)

    @cached_property
    def read_only(self) -> bool:
        """The data dir cannot be written: read commands work, writes are refused (memesearch.readonly)."""
        from memesearch.readonly import is_read_only

        return is_read_only(self.settings.home)

    def require_writable(self, action: str = "change the library") -> None:
        """Fail before any work starts when the data dir (or the SQLite database) cannot be written."""
        from memesearch.readonly import read_only_error

        if self.read_only or getattr(self.store, "read_only", False):
            raise read_only_error(self.settings.home, action)

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()
        # Only a client that was built: reading the property here would create one.
        client = self.__dict__.get("ml_client")
        if client is not None:
            client.close()
