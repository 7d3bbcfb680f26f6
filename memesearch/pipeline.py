"""One meme through OCR -> (caption) -> embed, skipping work that is already stored.

Each stage reads what is pending from the store and writes its result in its
own transaction, so an interrupted run (Ctrl-C, crash) leaves a consistent
database and the next run picks up exactly what is left.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from memesearch.config import Settings
from memesearch.errors import ImageError, MemeSearchError, ModelUnavailableError
from memesearch.library.decode import load_rgb, one_line_reason
from memesearch.library.scanner import mark_unreadable
from memesearch.ml.base import Embedder, OcrEngine
from memesearch.store.models import Meme
from memesearch.store.templates import TemplateStore
from memesearch.text import content_hash

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
    def __init__(self, store, settings: Settings, *, ocr: OcrEngine | None, embedder: Embedder) -> None:
        self.store = store
        self.settings = settings
        self.ocr = ocr
        self.embedder = embedder

    def run_ocr(self, progress: StageProgress | None = None) -> StageReport:
        report = StageReport("ocr")
        if self.ocr is None:
            return report
        pending = self.store.pending("ocr")
        for position, meme_id in enumerate(pending, start=1):
            meme = self.store.get_meme(meme_id)
            if meme.ocr_engine:  # filled meanwhile by a duplicate with the same bytes
                report.skipped += 1
            else:
                self._ocr_one(meme, report)
            if progress:
                progress("ocr", position, len(pending))
        return report

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
        self.store.set_ocr(meme.id, result.text, self.ocr.engine_id)
        TemplateStore(self.store).put_ocr_boxes(meme.id, result.boxes)
        report.done += 1

    def run_caption(self, captioner, meme_ids: list[int] | None = None, progress: StageProgress | None = None) -> StageReport:
        """Describe memes with a loaded ChainCaptioner (memesearch.ml.chain): by default every
        present meme that has no description from this model yet."""
        from memesearch.store.models import Description

        report = StageReport("caption")
        model_id = captioner.spec.id
        pending = self.store.ids_without_description(model_id) if meme_ids is None else meme_ids
        for position, meme_id in enumerate(pending, start=1):
            meme = self.store.get_meme(meme_id)
            try:
                image = load_rgb(Path(meme.path), self.settings.max_megapixels)
                result = captioner.caption_images([image])[0]
            except (ImageError, OSError) as exc:  # the file no longer decodes
                mark_unreadable(self.store, meme, _file_reason(exc))
                report.failed.append((meme_id, _file_reason(exc)))
            except MemeSearchError as exc:  # every backend failed on it
                message = getattr(exc, "message", None) or str(exc)
                self.store.mark_stage(meme_id, "caption", "failed", message)
                report.failed.append((meme_id, message))
            else:
                self.store.set_description(meme_id, Description(
                    model_id=model_id, text=result.text, backend=result.backend, dtype=result.dtype,
                    revision=getattr(result, "revision", ""), ms=result.ms,
                ))
                report.done += 1
            if progress:
                progress("caption", position, len(pending))
        return report

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
        report.skipped = run_grouping(self.store, progress)
        return report

    def run_image_embed(self, visual, progress: StageProgress | None = None) -> dict:
        """Image vectors of the visual search model (memesearch.visual.stage); nothing when visual is None."""
        from memesearch.visual.stage import run_image_embed

        return run_image_embed(self.store, visual, self.settings.max_megapixels, progress)
