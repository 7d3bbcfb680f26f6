"""JobManager: start, watch, cancel and retry bulk runs; also the body of the worker task.

A run's items are claimed under leases that a renewer thread keeps fresh while
the memes are being processed, so a slow model never loses its claim, and a
killed worker's claims expire after ``job_lease_s``. Most runs claim one meme at
a time; a describe run claims as many as its caption model takes per call (its
batch size, 1 for quantised models), captions them together and still completes,
fails or retries each meme on its own.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from memesearch.errors import InvalidInputError, NotFoundError
from memesearch.jobs.models import ACTIVE_STATES, ERRORS_SHOWN, KINDS, Run
from memesearch.jobs.processing import MemeProcessor, backoff_s, classify, is_model_level, reason
from memesearch.jobs.queue import build_huey, register_work_task

if TYPE_CHECKING:
    from memesearch.store.base import Store

log = logging.getLogger(__name__)
completions = logging.getLogger("memesearch.jobs.completed")

#: Work tasks enqueued per run: more than enough for the workers of one machine;
#: extra tasks find nothing to claim and end at once.
FANOUT = 8


class JobManager:
    def __init__(self, core) -> None:
        self.core = core
        self.store = core.store
        self.settings = core.settings
        self.huey = build_huey(core.settings)
        self._work_task = register_work_task(self.huey, self.work)
        self.processor = MemeProcessor(core)
        self.stopping = threading.Event()
        self.leases = LeaseRenewer(self.store, self.settings.job_lease_s)
        # The reaper re-kicks an index run that is still scanning (a scan can outlast the kick
        # interval); two threads scanning one folder at once collide on inserts and failed the run.
        self._scan_lock = threading.Lock()

    # -- the API the CLI and the web app use -------------------------------------------
    def start(self, kind: str, *, model: str | None = None, meme_ids: list[int] | None = None,
              folder_id: int | None = None) -> Run:
        if kind not in KINDS:
            raise InvalidInputError(f"unknown run kind {kind!r}", hint=f"one of: {', '.join(KINDS)}")
        if kind == "describe":
            model = model or self.settings.caption_model
        if model:
            from memesearch.ml.readiness import require_ready

            # An unknown model, or one that cannot run here (not downloaded, packages missing),
            # fails now in one sentence, before anything is queued, not once per meme.
            model = require_ready(model, self.settings).id
        if folder_id is not None and all(f.id != folder_id for f in self.store.list_folders()):
            raise NotFoundError(f"no folder with id {folder_id}")
        params = {"explicit": meme_ids is not None, "folder_id": folder_id}
        if kind == "index":
            run_id = self.store.create_run(kind, model, params)
            self.enqueue(run_id, 1)  # the first task scans, then fans out
            return self.get(run_id)
        ids = list(dict.fromkeys(meme_ids)) if meme_ids is not None else self._default_targets(kind, model)
        run_id = self.store.create_run(kind, model, params, meme_ids=ids)
        if ids:
            self.enqueue(run_id, min(FANOUT, len(ids)))
        else:
            self.store.update_run(run_id, state="done", finished_at=time.time())
        return self.get(run_id)

    def get(self, run_id: int) -> Run:
        row = self.store.get_run_row(run_id)
        if row is None:
            raise NotFoundError(f"no run with id {run_id}")
        return Run.from_row(row, self.store.run_errors(run_id, ERRORS_SHOWN))

    def list_runs(self, limit: int = 20) -> list[Run]:
        return [Run.from_row(row, self.store.run_errors(row["id"], ERRORS_SHOWN)) for row in self.store.list_run_rows(limit)]

    def cancel(self, run_id: int) -> Run:
        run = self.get(run_id)
        if run.active:
            # Memes being processed right now finish; nothing new is claimed.
            self.store.update_run(run_id, state="cancelled", finished_at=time.time())
            self.store.set_run_items_status(run_id, "queued", "cancelled")
        return self.get(run_id)

    def retry_failed(self, run_id: int) -> Run:
        run = self.get(run_id)
        if run.model:
            from memesearch.ml.readiness import require_ready

            require_ready(run.model, self.settings)  # still not downloaded: say so, queue nothing
        count = self.store.set_run_items_status(run_id, "failed", "queued")
        row = self.store.get_run_row(run_id)
        if row and row["state"] == "failed" and row.get("error"):
            # A run stopped because its model could not run: the memes it skipped are retried too.
            count += self.store.set_run_items_status(run_id, "cancelled", "queued")
        if count:
            self.store.update_run(run_id, state="queued", finished_at=None, error=None)
            self.enqueue(run_id, min(FANOUT, count))
        return self.get(run_id)

    def enqueue(self, run_id: int, copies: int = 1) -> None:
        self.store.update_run(run_id, kicked_at=time.time())
        for _ in range(max(1, copies)):
            self._work_task(run_id)

    # -- the worker task ------------------------------------------------------------
    def work(self, run_id: int) -> None:
        """Claim and process the run's items until none is due."""
        row = self.store.get_run_row(run_id)
        if row is None or row["state"] not in ACTIVE_STATES:
            return
        if row["kind"] == "index" and not row["params"].get("scanned"):
            with self._scan_lock:
                row = self.store.get_run_row(run_id)  # another thread may have scanned meanwhile
                if row is None or row["state"] not in ACTIVE_STATES:
                    return
                if not row["params"].get("scanned"):
                    if not self._scan(row):
                        return
                    row = self.store.get_run_row(run_id)
                    self.enqueue(run_id, FANOUT - 1)
        if row["state"] == "queued":
            self.store.update_run(run_id, state="running", started_at=row["started_at"] or time.time())
        while not self.stopping.is_set():
            claimed = self.store.claim_run_items(run_id, self._claim_size(row), self.settings.job_lease_s)
            if not claimed:
                break
            if len(claimed) == 1:
                self._process_item(row, claimed[0])
            else:
                self._process_batch(row, claimed)
        self.finish_if_complete(run_id)

    def _claim_size(self, row: dict) -> int:
        """Memes to claim at once: a describe run's caption model batch size once that model is
        loaded (the first meme, alone, loads it; a model that cannot load then fails one meme,
        not a batch), else 1. This is also how many decoded images a worker thread holds."""
        if row["kind"] != "describe":
            return 1
        captioner = self.core.loaded_captioner(row["model"])
        if captioner is None:
            return 1
        from memesearch.ml.caption_batches import batch_size_of

        return batch_size_of(captioner)

    def _process_item(self, row: dict, meme_id: int) -> None:
        run_id = row["id"]
        with self.leases.hold(run_id, meme_id):
            try:
                self.processor.process(row, meme_id)
            except Exception as exc:
                self._record_failure(run_id, meme_id, exc)
                return
        self._finish_done(run_id, meme_id)

    def _process_batch(self, row: dict, meme_ids: list[int]) -> None:
        run_id = row["id"]
        with self.leases.hold(run_id, *meme_ids):
            try:
                outcomes = self.processor.process_batch(row, meme_ids)
            except Exception:  # a bug, not a meme's failure: each meme alone says whose it is
                log.exception("run %d: a batch of %d memes failed; processing them one at a time", run_id, len(meme_ids))
                outcomes = None
        if outcomes is None:
            for meme_id in meme_ids:
                self._process_item(row, meme_id)
            return
        stopped = False
        for meme_id in meme_ids:
            exc = outcomes[meme_id]
            if exc is None:
                self._finish_done(run_id, meme_id)
            elif stopped:  # the model cannot run: the rest of the batch is cancelled, not failed
                self.store.finish_run_item(run_id, meme_id, "queued")
                self.store.set_run_items_status(run_id, "queued", "cancelled")
            else:
                stopped = self._record_failure(run_id, meme_id, exc)

    def _finish_done(self, run_id: int, meme_id: int) -> None:
        if self.store.finish_run_item(run_id, meme_id, "done"):
            completions.info("completed meme %d of run %d", meme_id, run_id)

    def _record_failure(self, run_id: int, meme_id: int, exc: Exception) -> bool:
        """Fail, retry later or stop the run; True when the run was stopped."""
        if is_model_level(exc) and self._nothing_done_yet(run_id):
            self._stop_run(run_id, meme_id, exc)
            return True
        kind = classify(exc)
        attempts = self.store.item_attempts(run_id, meme_id) + 1
        limit = self.settings.job_max_wait_attempts if kind == "unavailable" else self.settings.job_max_attempts
        message = reason(exc)
        if kind == "permanent" or attempts >= limit:
            self.store.finish_run_item(run_id, meme_id, "failed", message)
            log.warning("run %d: meme %d failed (%s, attempt %d): %s", run_id, meme_id, kind, attempts, message)
        else:
            retry_at = time.time() + backoff_s(attempts - 1)
            self.store.finish_run_item(run_id, meme_id, "queued", message, retry_at=retry_at)
            log.info("run %d: meme %d will be retried (%s, attempt %d): %s", run_id, meme_id, kind, attempts, message)
        return False

    def _nothing_done_yet(self, run_id: int) -> bool:
        row = self.store.get_run_row(run_id)
        return row is not None and row["counts"]["done"] == 0

    def _stop_run(self, run_id: int, meme_id: int, exc: Exception) -> None:
        """The model cannot run at all: every other meme would fail the same way, so the run
        ends now as one failure with one message (the rest are cancelled, not failed)."""
        message = reason(exc)
        self.store.finish_run_item(run_id, meme_id, "failed", message)
        self.store.set_run_items_status(run_id, "queued", "cancelled")
        self.store.update_run(run_id, state="failed", error=message, finished_at=time.time())
        log.warning("run %d stopped: the model cannot run: %s", run_id, message)

    def finish_if_complete(self, run_id: int) -> None:
        row = self.store.get_run_row(run_id)
        if row is None or row["state"] not in ACTIVE_STATES:
            return
        if row["kind"] == "index" and not row["params"].get("scanned"):
            return
        counts = row["counts"]
        if counts["queued"] == 0 and counts["running"] == 0:
            state = "failed" if counts["done"] == 0 and counts["failed"] > 0 else "done"
            if row["kind"] == "index":
                self._group_templates(run_id)
            self.store.update_run(run_id, state=state, finished_at=time.time())

    def _group_templates(self, run_id: int) -> None:
        """Group the memes this run gave template features (once per run, not per meme:
        grouping compares with the whole library). A failure here fails no meme."""
        from memesearch.templates.stage import run_grouping

        try:
            run_grouping(self.store)
        except Exception:
            log.exception("run %d: template grouping failed; the next index run retries it", run_id)

    def _scan(self, row: dict) -> bool:
        from memesearch.library.scanner import scan_folder

        folder_id = row["params"].get("folder_id")
        folders = [f for f in self.store.list_folders() if folder_id is None or f.id == folder_id]
        try:
            for folder in folders:
                scan_folder(self.store, folder, self.settings)
        except Exception as exc:  # the run shows why instead of retrying a broken folder forever
            if (self.store.get_run_row(row["id"]) or {}).get("params", {}).get("scanned"):
                log.info("run %d: another worker finished the scan first (%s)", row["id"], reason(exc))
                return False
            self.store.update_run(row["id"], state="failed", error=reason(exc), finished_at=time.time())
            log.exception("run %d: scan failed", row["id"])
            return False
        ids = self._index_targets([f.id for f in folders], row["model"])
        self.store.add_run_items(row["id"], ids)
        self.store.update_run(row["id"], params={**row["params"], "scanned": True})
        return True

    def _default_targets(self, kind: str, model: str | None) -> list[int]:
        if kind == "describe":
            return self.store.ids_without_description(model)
        if kind == "ocr":
            return self.store.pending("ocr")
        return self.store.ids_needing_vectors(self.core.embedder.model_id)

    def _index_targets(self, folder_ids: list[int], model: str | None) -> list[int]:
        present = set()
        for folder_id in folder_ids:
            present.update(row["id"] for row in self.store.files_in_folder(folder_id).values() if row["status"] == "ok")
        wanted = set(self.store.ids_needing_vectors(self.core.embedder.model_id))
        if self.core.ocr is not None:
            wanted.update(self.store.pending("ocr"))
        if model:
            wanted.update(self.store.ids_without_description(model))
        if self.core.visual is not None:
            from memesearch.visual.stage import pending as image_pending

            wanted.update(image_pending(self.store, self.core.visual.space))
        return sorted(present & wanted)


class LeaseRenewer:
    """One thread per process renews the leases of every meme being processed here, every
    third of the lease length (a thread per meme would cost more than the pipeline itself)."""

    def __init__(self, store: Store, lease_s: float) -> None:
        self.store, self.lease_s = store, lease_s
        self._held: dict[tuple[int, int], int] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextmanager
    def hold(self, run_id: int, *meme_ids: int) -> Iterator[None]:
        keys = [(run_id, meme_id) for meme_id in meme_ids]
        with self._lock:
            for key in keys:
                self._held[key] = self._held.get(key, 0) + 1
            if self._thread is None:
                self._thread = threading.Thread(target=self._renew_forever, daemon=True, name="lease-renewer")
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                for key in keys:
                    self._held[key] -= 1
                    if not self._held[key]:
                        del self._held[key]

    def _renew_forever(self) -> None:
        while True:
            time.sleep(self.lease_s / 3)
            with self._lock:
                held = list(self._held)
            by_run: dict[int, list[int]] = {}
            for run_id, meme_id in held:
                by_run.setdefault(run_id, []).append(meme_id)
            for run_id, meme_ids in by_run.items():
                try:
                    self.store.extend_run_leases(run_id, meme_ids, self.lease_s)
                except Exception:  # a busy database now must not kill renewals for good
                    log.exception("could not renew leases of run %d", run_id)
