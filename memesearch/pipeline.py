"""One meme through OCR -> (caption) -> embed, skipping work that is already stored.

Each stage reads what is pending from the store and writes its result in its
own transaction, so an interrupted run (Ctrl-C, crash) leaves a consistent
database and the next run picks up exactly what is left.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from memesearch.config import Settings
from memesearch.errors import ImageError, MemeSearchError, ModelUnavailableError
from memesearch.library.decode import load_rgb, one_line_reason
from memesearch.library.scanner import mark_unreadable
from memesearch.ml.base import Embedder, OcrEngine
from memesearch.ml.ocr import RapidOcrEngine
from memesearch.ocr_workers import OcrWorkers, Outcome, template_features, worker_count
from memesearch.store.models import Meme
from memesearch.store.templates import TemplateStore
from memesearch.text import content_hash

if TYPE_CHECKING:
    from memesearch.store.base import Store

log = logging.getLogger(__name__)

StageProgress = Callable[[str, int, int], None]
_EMBED_BATCH = 64


@dataclass
class StageReport:
    stage: str
    done: int = 0
    skipped: int = 0
    failed: list[tuple[int, str]] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"stage": self.stage, "done": self.done, "skipped": self.skipped,
                "failed": [{"id": i, "error": e} for i, e in self.failed]}


def _file_reason(exc: BaseException) -> str:
    if isinstance(exc, ImageError):
        return exc.message
    return f"cannot read: {getattr(exc, 'strerror', None) or exc}"


def embedding_text(meme: Meme) -> str:
    """What a meme's vector is made from: every text a person or model wrote about it."""
    parts = [meme.user_description, meme.description, meme.ocr_text, " ".join(meme.tags)]
    return "\n".join(" ".join(part.split()) for part in parts if part and part.strip())


class Pipeline:
    def __init__(self, store: Store, settings: Settings, *, ocr: OcrEngine | None, embedder: Embedder) -> None:
        self.store = store
        self.settings = settings
        self.ocr = ocr
        self.embedder = embedder
        self._features_with_ocr = 0  # template features stored by the OCR stage, reported by run_templates

    def run_ocr(self, progress: StageProgress | None = None) -> StageReport:
        report = StageReport("ocr")
        if self.ocr is None:
            return report
        pending = self.store.pending("ocr")
        workers = worker_count(self.settings.ocr_workers, len(pending)) if isinstance(self.ocr, RapidOcrEngine) else 1
        if workers > 1:
            self._ocr_in_workers(pending, workers, report, progress)
            return report
        for position, meme_id in enumerate(pending, start=1):
            meme = self.store.get_meme(meme_id)
            if meme.ocr_engine:  # filled meanwhile by a duplicate with the same bytes
                report.skipped += 1
            else:
                self._ocr_one(meme, report)
            if progress:
                progress("ocr", position, len(pending))
        return report

    def _ocr_in_workers(self, pending: list[int], workers: int, report: StageReport,
                        progress: StageProgress | None) -> None:
        """The same stage with files read in parallel processes (memesearch.ocr_workers)."""
        memes: dict[int, Meme] = {}
        templates = TemplateStore(self.store)

        def to_read():
            # Lazily, so that a duplicate queued after its twin is skipped once the twin's text is stored.
            for meme_id in pending:
                meme = self.store.get_meme(meme_id)
                if meme.ocr_engine:
                    report.skipped += 1
                    continue
                memes[meme_id] = meme
                yield meme_id, meme.path, templates.needs_features(meme_id)

        ocr = self.ocr
        with OcrWorkers(workers, min_confidence=ocr.min_confidence, max_megapixels=self.settings.max_megapixels,
                        models_dir=ocr.models_dir, int8_recognition=ocr.int8_recognition) as pool:
            # The parent mostly waits on the workers here: it loads the embedder meanwhile,
            # so the embed stage after OCR does not start with a model load.
            preload = threading.Thread(target=self._preload_embedder, name="preload-embedder", daemon=True)
            preload.start()
            for outcome in pool.read(to_read()):
                meme = memes.pop(outcome.meme_id)
                if outcome.engine_down:
                    raise ModelUnavailableError(outcome.engine_down)
                if outcome.unreadable:
                    mark_unreadable(self.store, meme, outcome.unreadable)
                    report.failed.append((meme.id, outcome.unreadable))
                    log.warning("cannot read %s: %s", meme.path, outcome.unreadable)
                elif outcome.failed:
                    self.store.mark_stage(meme.id, "ocr", "failed", outcome.failed)
                    report.failed.append((meme.id, outcome.failed))
                    log.warning("OCR failed for %s: %s", meme.path, outcome.failed)
                else:
                    self._store_read(meme.id, outcome)
                    report.done += 1
                if progress:
                    progress("ocr", report.done + report.skipped + len(report.failed), len(pending))
        preload.join()  # long done on any real folder; the stage ends with the embedder ready

    def _preload_embedder(self) -> None:
        try:
            self.embedder.ensure_loaded()
        except Exception as exc:  # noqa: BLE001 - the embed stage loads it again and reports why it fails
            log.debug("embedder not preloaded: %s", exc)

    def _ocr_one(self, meme: Meme, report: StageReport) -> None:
        """One meme; whatever its file or the OCR engine raises for it is recorded, and the run goes on.
        Only an engine that cannot run at all (ModelUnavailableError) stops the stage."""
        try:
            image = load_rgb(Path(meme.path), self.settings.max_megapixels)
        except (ImageError, OSError) as exc:
            message = _file_reason(exc)
            mark_unreadable(self.store, meme, message)
            report.failed.append((meme.id, message))
            log.warning("cannot read %s: %s", meme.path, message)
            return
        try:
            result = self.ocr.read(image)
        except ModelUnavailableError:
            raise
        except Exception as exc:  # noqa: BLE001 - one image the engine chokes on must not stop the run
            message = f"OCR failed: {one_line_reason(exc)}"
            self.store.mark_stage(meme.id, "ocr", "failed", message)
            report.failed.append((meme.id, message))
            log.warning("OCR failed for %s: %s", meme.path, message)
            return
        templates = TemplateStore(self.store)
        features = template_features(image, result) if templates.needs_features(meme.id) else None
        self._store_read(meme.id, Outcome(meme.id, result=result, features=features))
        report.done += 1

    def _store_read(self, meme_id: int, outcome: Outcome) -> None:
        """A meme's text and caption boxes, and its template features when they came with them
        (computed from the same decoded picture: the template stage then skips it)."""
        templates = TemplateStore(self.store)
        self.store.set_ocr(meme_id, outcome.result.text, self.ocr.engine_id)
        templates.put_ocr_boxes(meme_id, outcome.result.boxes)
        if outcome.features is not None:
            templates.put_features(meme_id, outcome.features)
            self._features_with_ocr += 1

    def run_caption(self, captioner, meme_ids: list[int] | None = None, progress: StageProgress | None = None) -> StageReport:
        """Describe memes with a loaded ChainCaptioner (memesearch.ml.chain): by default every
        present meme that has no description from this model yet. Memes go to the model in
        batches (memesearch.ml.caption_batches); one that fails never fails the others."""
        from memesearch.ml.caption_batches import batch_size_of

        report = StageReport("caption")
        pending = self.store.ids_without_description(captioner.spec.id) if meme_ids is None else meme_ids
        position = 0
        while position < len(pending):
            chunk = pending[position : position + batch_size_of(captioner)]
            self._caption_chunk(captioner, chunk, report)
            position += len(chunk)
            if progress:
                progress("caption", position, len(pending))
        return report

    def _caption_chunk(self, captioner, meme_ids: list[int], report: StageReport) -> None:
        from memesearch.ml.caption_batches import caption_each
        from memesearch.store.models import Description

        loaded: list[tuple[int, object]] = []
        for meme_id in meme_ids:
            meme = self.store.get_meme(meme_id)
            try:
                loaded.append((meme_id, load_rgb(Path(meme.path), self.settings.max_megapixels)))
            except (ImageError, OSError) as exc:  # the file no longer decodes
                mark_unreadable(self.store, meme, _file_reason(exc))
                report.failed.append((meme_id, _file_reason(exc)))
        results = caption_each(captioner, [image for _, image in loaded])
        for (meme_id, _), result in zip(loaded, results, strict=True):
            if isinstance(result, MemeSearchError):  # every backend failed on it
                message = getattr(result, "message", None) or str(result)
                self.store.mark_stage(meme_id, "caption", "failed", message)
                report.failed.append((meme_id, message))
                continue
            self.store.set_description(meme_id, Description(
                model_id=captioner.spec.id, text=result.text, backend=result.backend, dtype=result.dtype,
                revision=getattr(result, "revision", ""), ms=result.ms,
            ))
            report.done += 1

    def run_embed(self, progress: StageProgress | None = None) -> StageReport:
        report = StageReport("embed")
        model_id = self.embedder.model_id
        pending = self.store.ids_needing_vectors(model_id)
        stored = self.store.vector_hashes(model_id)
        for start in range(0, len(pending), _EMBED_BATCH):
            batch = self.store.get_memes(pending[start : start + _EMBED_BATCH])
            todo: list[tuple[int, str, str]] = []
            unchanged: list[int] = []
            for meme in batch:
                text = embedding_text(meme)
                digest = content_hash(text)
                if stored.get(meme.id) == digest:
                    unchanged.append(meme.id)
                else:
                    todo.append((meme.id, digest, text))
            if todo:
                vectors = self.embedder.embed([text for _, _, text in todo])
                self.store.put_vectors(model_id, [(i, h, v) for (i, h, _), v in zip(todo, vectors, strict=True)])
            if unchanged:
                self.store.mark_stage_many(unchanged, "embed", "done")
            report.done += len(todo)
            report.skipped += len(unchanged)
            if progress:
                progress("embed", min(start + _EMBED_BATCH, len(pending)), len(pending))
        return report

    def run_templates(self, progress: StageProgress | None = None) -> StageReport:
        """Template features for new or changed memes, then group what is not grouped yet."""
        from memesearch.templates.stage import run_features, run_grouping  # OpenCV loads only here

        report = StageReport("templates")
        report.done, report.failed = run_features(self.store, self.settings.max_megapixels, progress)
        report.done += self._features_with_ocr
        self._features_with_ocr = 0
        report.skipped = run_grouping(self.store, progress)
        return report

    def run_image_embed(self, visual, progress: StageProgress | None = None) -> dict:
        """Image vectors of the visual search model (memesearch.visual.stage); nothing when visual is None."""
        from memesearch.visual.stage import run_image_embed

        return run_image_embed(self.store, visual, self.settings.max_megapixels, progress)
