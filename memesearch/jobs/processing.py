"""What a worker does for the memes of a run, and how a failure is classified.

Each stage is idempotent: work already finished (by this run before a crash, or
by anyone for an implicit run) is detected from the database and skipped, so a
restarted run never redoes finished memes.

Failures: an unreadable image is *permanent* (fails once, visibly). An
unreachable ML service is *unavailable* (the item waits with backoff up to 60 s,
for many attempts). Anything else a model does is *transient* (a few retries).
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from memesearch.errors import InvalidInputError, NotFoundError
from memesearch.library.decode import load_rgb
from memesearch.ml.remote import ServiceUnavailableError
from memesearch.pipeline import embedding_text
from memesearch.store.models import Description, Meme
from memesearch.store.templates import TemplateStore
from memesearch.text import content_hash

log = logging.getLogger(__name__)

BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 60.0


def stages_of(kind: str, model: str | None) -> list[str]:
    return {
        "index": ["ocr", "templates"] + (["caption"] if model else []) + ["embed", "image_embed"],
        "describe": ["caption", "embed"],
        "ocr": ["ocr", "embed"],
        "embed": ["embed"],
    }[kind]


def classify(exc: BaseException) -> str:
    """'permanent' | 'unavailable' | 'transient'."""
    if isinstance(exc, ServiceUnavailableError):
        return "unavailable"
    if isinstance(exc, (InvalidInputError, NotFoundError, OSError)):
        return "permanent"
    return "transient"


def is_model_level(exc: BaseException) -> bool:
    """The model itself cannot run (not downloaded, no backend loads): no meme would succeed."""
    from memesearch.errors import ModelNotReadyError
    from memesearch.ml.chain import ModelLoadError

    return isinstance(exc, (ModelNotReadyError, ModelLoadError))


def backoff_s(attempts: int) -> float:
    return min(BACKOFF_BASE_S * 2**attempts, BACKOFF_MAX_S)


def reason(exc: BaseException) -> str:
    return getattr(exc, "message", None) or f"{exc.__class__.__name__}: {exc}"


class MemeProcessor:
    """Runs the stages of a run on one meme with the core's models."""

    def __init__(self, core) -> None:
        self.core = core
        #: Seconds spent inside models, for the benchmark's "overhead excluding model time".
        self.model_s = 0.0
        #: Seconds spent decoding images (reported apart: it is neither model nor bookkeeping).
        self.decode_s = 0.0

    def process(self, run: dict, meme_id: int) -> None:
        """Raises on failure; the caller classifies and records it."""
        explicit = bool(run["params"].get("explicit"))
        for stage in stages_of(run["kind"], run["model"]):
            meme = self._present(meme_id)
            try:
                getattr(self, f"_{stage}")(meme, run, explicit)
            except Exception as exc:
                self._note_failure(meme_id, stage, exc)
                raise

    def process_batch(self, run: dict, meme_ids: list[int]) -> dict[int, Exception | None]:
        """A describe run's memes together: their captions in as few model calls as the model
        allows (memesearch.ml.caption_batches), then each meme's other stages on its own.
        Returns each meme's failure (None: done); one meme's failure never fails the others.
        At most ``len(meme_ids)`` decoded images are held at once."""
        from memesearch.ml.caption_batches import caption_each

        explicit = bool(run["params"].get("explicit"))
        outcomes: dict[int, Exception | None] = {}
        todo: list[tuple[Meme, object]] = []
        for meme_id in meme_ids:
            try:
                meme = self._present(meme_id)
                if self._needs_caption(meme, run, explicit):
                    todo.append((meme, self._image(meme)))
            except Exception as exc:
                self._note_failure(meme_id, "caption", exc)
                outcomes[meme_id] = exc
        if todo:
            started = time.perf_counter()
            results = caption_each(self.core.captioner(run["model"]), [image for _, image in todo])
            self.model_s += time.perf_counter() - started
            for (meme, _), result in zip(todo, results, strict=True):
                if isinstance(result, Exception):
                    self._note_failure(meme.id, "caption", result)
                    outcomes[meme.id] = result
                else:
                    self._store_caption(meme.id, run["model"], result)
        for meme_id in meme_ids:
            if meme_id not in outcomes:
                try:  # the caption is found stored, so only the later stages run
                    self.process(run, meme_id)
                    outcomes[meme_id] = None
                except Exception as exc:
                    outcomes[meme_id] = exc
        return outcomes

    def _present(self, meme_id: int) -> Meme:
        meme = self.core.store.get_meme(meme_id)
        if meme.status != "ok":
            raise NotFoundError(f"meme {meme_id} is {meme.status} ({meme.path})")
        return meme

    def _note_failure(self, meme_id: int, stage: str, exc: Exception) -> None:
        if classify(exc) == "permanent":
            self.core.store.mark_stage(meme_id, stage, "failed", reason(exc))

    def _image(self, meme: Meme):
        started = time.perf_counter()
        image = load_rgb(Path(meme.path), self.core.settings.max_megapixels)
        self.decode_s += time.perf_counter() - started
        return image

    def _ocr(self, meme: Meme, run: dict, explicit: bool) -> None:
        engine = self.core.ocr
        if engine is None:
            return
        done_by_this_run = meme.ocr_engine and meme.updated_at >= run["created_at"]
        if done_by_this_run or (meme.ocr_engine and not explicit):
            return
        image = self._image(meme)
        started = time.perf_counter()
        result = engine.read(image)
        self.model_s += time.perf_counter() - started
        self.core.store.set_ocr(meme.id, result.text, engine.engine_id)
        TemplateStore(self.core.store).put_ocr_boxes(meme.id, result.boxes)

    def _templates(self, meme: Meme, run: dict, explicit: bool) -> None:
        """Template features only: grouping runs once when the run completes (see manager.py)."""
        from memesearch.templates.stage import extract_one  # OpenCV loads only here

        templates = TemplateStore(self.core.store)
        if not templates.needs_features(meme.id) and not explicit:
            return
        started = time.perf_counter()
        extract_one(self.core.store, meme, self.core.settings.max_megapixels)
        self.model_s += time.perf_counter() - started

    @staticmethod
    def _needs_caption(meme: Meme, run: dict, explicit: bool) -> bool:
        existing = next((d for d in meme.descriptions if d.model_id == run["model"]), None)
        # Described already (by this run before a crash, or before the run): not again.
        return existing is None or (explicit and existing.created_at < run["created_at"])

    def _caption(self, meme: Meme, run: dict, explicit: bool) -> None:
        if not self._needs_caption(meme, run, explicit):
            return
        image = self._image(meme)
        captioner = self.core.captioner(run["model"])
        started = time.perf_counter()
        result = captioner.caption_images([image])[0]
        self.model_s += time.perf_counter() - started
        self._store_caption(meme.id, run["model"], result)

    def _store_caption(self, meme_id: int, model: str, result) -> None:
        self.core.store.set_description(meme_id, Description(
            model_id=model, text=result.text, backend=result.backend, dtype=result.dtype,
            revision=getattr(result, "revision", ""), ms=result.ms,
        ))

    def _embed(self, meme: Meme, run: dict, explicit: bool) -> None:
        embedder = self.core.embedder
        text = embedding_text(meme)
        digest = content_hash(text)
        if self.core.store.vector_hash(meme.id, embedder.model_id) == digest:
            return  # this exact text is embedded already
        started = time.perf_counter()
        vector = embedder.embed([text])[0]
        self.model_s += time.perf_counter() - started
        self.core.store.put_vectors(embedder.model_id, [(meme.id, digest, vector)])

    def _image_embed(self, meme: Meme, run: dict, explicit: bool) -> None:
        """The visual search model's image vector (memesearch.visual.stage), when one is installed.
        A model that cannot run fails no meme: the meme stays pending for the next index run."""
        from memesearch.errors import ModelUnavailableError
        from memesearch.visual.model import STAGE
        from memesearch.visual.stage import embed_meme

        visual = self.core.visual
        if visual is None or self.core.store.vector_hash(meme.id, visual.space, stage=STAGE) == meme.sha256 or not meme.sha256:
            return  # off, or this meme's bytes have their vector already
        started = time.perf_counter()
        try:
            item = embed_meme(self.core.store, visual, meme, self.core.settings.max_megapixels)
        except ServiceUnavailableError:
            raise  # the item waits for the service like any other stage
        except ModelUnavailableError as exc:
            log.info("meme %d: no image vector (%s)", meme.id, reason(exc))
            return
        self.model_s += time.perf_counter() - started
        self.core.store.put_vectors(visual.space, [item], stage=STAGE)
