"""OCR of many memes in worker processes, one onnxruntime thread each.

Text detection and recognition run small convolutions that one thread keeps busy; a
second intra-op thread mostly waits at barriers. N processes with one thread each
read N memes at once and use N cores fully (bench/bench_index.py measures both).
Each worker decodes its own file too, so decoding overlaps with OCR elsewhere, and when
asked computes the meme's template features from the same decoded picture (and the caption
boxes it just found), so a new file is decoded once for both stages.

The parent keeps every store write: results come back in submission order and are
recorded one by one, so Ctrl-C or a crash leaves each meme either done or pending.
Workers ignore SIGINT (the parent owns Ctrl-C) and exit with the parent. A file that
kills its worker (a native crash in a decoder or model) is found by reading the memes
that were in flight one at a time in a fresh worker; it is recorded as failed and the
others are read normally.
"""

from __future__ import annotations

import multiprocessing
import os
import signal
from collections import deque
from collections.abc import Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path

from memesearch.errors import ImageError, ModelUnavailableError
from memesearch.ml.base import OcrResult
from memesearch.templates.record import TemplateFeatures

#: Below this many pending memes, starting workers (a Python process and the two models
#: each, ~2 s) costs more than it saves: the parent reads them itself.
MIN_MEMES_FOR_WORKERS = 12
#: Each worker holds ~150 MB (models, arena); more than this rarely helps a desktop.
MAX_WORKERS = 8
CRASHED = "OCR failed: the OCR worker process died on this file"


@dataclass(frozen=True)
class Outcome:
    """What reading one meme gave: a result, or why the file or the engine failed."""

    meme_id: int
    result: OcrResult | None = None
    unreadable: str | None = None  # the file no longer decodes
    failed: str | None = None  # the engine raised on it (or crashed)
    engine_down: str | None = None  # the engine cannot run at all (ModelUnavailableError)
    #: Template features of the same picture, when asked for and they could be computed
    #: (else the template stage computes them and records any failure itself).
    features: TemplateFeatures | None = None


def worker_count(requested: int, pending: int) -> int:
    """Processes for ``pending`` memes: ``requested`` (0 = one per usable core), at most
    MAX_WORKERS and never more than the memes; 1 means "read in this process"."""
    if pending < MIN_MEMES_FOR_WORKERS:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    wanted = requested if requested > 0 else min(cores, MAX_WORKERS)
    return max(1, min(wanted, pending))


# --- worker side -------------------------------------------------------------------------

_engine = None
_max_megapixels = 0.0


def _start_worker(min_confidence: float, max_megapixels: float, models_dir: str | None = None,
                  int8_recognition: bool = True) -> None:
    global _engine, _max_megapixels
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    import cv2

    # One OpenCV thread, like onnxruntime's: parallelism comes from the worker processes,
    # and rapidocr's small resizes and crops only pay for a thread pool's hand-offs.
    cv2.setNumThreads(1)
    from memesearch.ml.ocr import RapidOcrEngine

    _engine = RapidOcrEngine(threads=1, min_confidence=min_confidence,
                             models_dir=Path(models_dir) if models_dir else None, int8_recognition=int8_recognition)
    _max_megapixels = max_megapixels


def _read_one(meme_id: int, path: str, with_features: bool = False) -> Outcome:
    from memesearch.library.decode import load_rgb, one_line_reason

    try:
        image = load_rgb(Path(path), _max_megapixels)
    except ImageError as exc:
        return Outcome(meme_id, unreadable=exc.message)
    except OSError as exc:
        return Outcome(meme_id, unreadable=f"cannot read: {exc.strerror or exc}")
    try:
        result = _engine.read(image)
    except ModelUnavailableError as exc:  # the parent stops the stage (sent as text: it pickles)
        return Outcome(meme_id, engine_down=exc.message)
    except Exception as exc:  # noqa: BLE001 - one image the engine chokes on is that image's failure
        return Outcome(meme_id, failed=f"OCR failed: {one_line_reason(exc)}")
    return Outcome(meme_id, result=result, features=template_features(image, result) if with_features else None)


def template_features(image, result: OcrResult) -> TemplateFeatures | None:
    from memesearch.store.templates import stored_boxes
    from memesearch.templates.features import extract, single_threaded_opencv

    try:
        with single_threaded_opencv():  # the boxes as stored: the same features as the stage's own
            return extract(image, stored_boxes(result.boxes))
    except Exception:  # noqa: BLE001 - the template stage tries this meme again and records why
        return None


# --- parent side -------------------------------------------------------------------------


class OcrWorkers:
    """A pool of OCR processes; ``read`` yields one Outcome per (meme id, path), in order."""

    #: What a worker runs per meme (a module-level function: spawn pickles it by name).
    task = staticmethod(_read_one)

    def __init__(self, workers: int, *, min_confidence: float, max_megapixels: float,
                 models_dir: Path | None = None, int8_recognition: bool = True) -> None:
        self.workers = workers
        self._init_args = (min_confidence, max_megapixels, str(models_dir) if models_dir else None, int8_recognition)
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> OcrWorkers:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def close(self) -> None:
        if self._pool is not None:
            # Queued reads are dropped; a worker finishes at most the meme it is on.
            self._pool.shutdown(wait=False, cancel_futures=True)
            self._pool = None

    def _new_pool(self, workers: int) -> ProcessPoolExecutor:
        # spawn, not fork: the parent may already run onnxruntime or database threads.
        return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"),
                                   initializer=_start_worker, initargs=self._init_args)

    def read(self, items: Iterable[tuple]) -> Iterator[Outcome]:
        """Keep every worker busy with two memes each. Items are the task's arguments, (meme id,
        path[, with_features]); they are consumed lazily, so the caller may decide what is
        still worth reading when it is asked for the next one."""
        source = iter(items)
        in_flight: deque[tuple[tuple, Future]] = deque()
        upcoming = None  # taken from ``items``, not submitted yet (kept if the pool breaks at submit)
        while True:
            if self._pool is None:
                self._pool = self._new_pool(self.workers)
            try:
                while len(in_flight) < 2 * self.workers:
                    upcoming = upcoming or next(source, None)
                    if upcoming is None:
                        break
                    in_flight.append((upcoming, self._pool.submit(self.task, *upcoming)))
                    upcoming = None
                if not in_flight:
                    return
                item, future = in_flight[0]
                outcome = future.result()
                in_flight.popleft()
                yield outcome
            except BrokenProcessPool:
                self._pool.shutdown(wait=False, cancel_futures=True)
                self._pool = None
                suspects = [item for item, _ in in_flight]
                in_flight.clear()
                yield from self._isolate(suspects)

    def _isolate(self, suspects: list[tuple]) -> Iterator[Outcome]:
        """Read each meme of a crashed batch alone in its own worker: the one that kills it again fails."""
        for item in suspects:
            pool = self._new_pool(1)
            try:
                yield pool.submit(self.task, *item).result()
            except BrokenProcessPool:
                yield Outcome(item[0], failed=CRASHED)
            finally:
                pool.shutdown(wait=False, cancel_futures=True)
