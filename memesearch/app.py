"""Builds the core objects from Settings, lazily, for the CLI, the web app and workers.

Nothing heavy happens at construction: the store opens on first use and models
load on first inference, so `memesearch status` stays instant.
"""

from __future__ import annotations

from functools import cached_property

from memesearch.config import Settings


class Core:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @cached_property
    def store(self):
        from memesearch.store import open_store

        return open_store(self.settings)

    @cached_property
    def embedder(self):
        from memesearch.ml.embedders import get_embedder

        threads = self.settings.threads or None
        return get_embedder(self.settings.embed_model, self.settings.models_dir / self.settings.embed_model, threads=threads)

    @cached_property
    def ocr(self):
        if not self.settings.ocr_enabled:
            return None
        from memesearch.ml.ocr import RapidOcrEngine

        return RapidOcrEngine(threads=self.settings.threads or None, min_confidence=self.settings.ocr_min_confidence)

    @cached_property
    def pipeline(self):
        from memesearch.pipeline import Pipeline

        return Pipeline(self.store, self.settings, ocr=self.ocr, embedder=self.embedder)

    @cached_property
    def search_engine(self):
        from memesearch.search import SearchEngine

        return SearchEngine(self.store, self.embedder)

    def close(self) -> None:
        if "store" in self.__dict__:
            self.store.close()
