"""Worker threads: take Huey messages and run them, plus the reaper on a timer.

`memesearch worker` runs this in its own process (several may run, on several
machines with Redis); `memesearch serve` runs it inside the web process via
``start_in_process``.
"""

from __future__ import annotations

import logging
import threading

from memesearch.jobs import reaper

log = logging.getLogger(__name__)

POLL_S = 0.2


class WorkerHandle:
    def __init__(self, core, concurrency: int = 1, reap_every_s: float | None = None) -> None:
        self.core = core
        self.manager = core.jobs
        self.huey = self.manager.huey
        self.concurrency = max(1, concurrency)
        lease = core.settings.job_lease_s
        self.reap_every_s = reap_every_s if reap_every_s is not None else max(0.5, min(lease / 4, 15.0))
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> WorkerHandle:
        self.manager.stopping.clear()
        self._threads = [threading.Thread(target=self._consume, name=f"memesearch-worker-{i + 1}", daemon=True)
                         for i in range(self.concurrency)]
        self._threads.append(threading.Thread(target=self._reap, name="memesearch-reaper", daemon=True))
        for thread in self._threads:
            thread.start()
        return self

    def _consume(self) -> None:
        while not self._stop.is_set():
            try:
                task = self.huey.dequeue()
            except Exception:  # queue backend hiccup (Redis restart): wait and retry
                log.exception("cannot read the job queue")
                self._stop.wait(2.0)
                continue
            if task is None:
                self._stop.wait(POLL_S)
                continue
            try:
                self.huey.execute(task)
            except Exception:
                log.exception("job task %s failed", task)

    def _reap(self) -> None:
        while True:
            try:
                reaper.tick(self.manager)
            except Exception:
                log.exception("job reaper failed")
            if self._stop.wait(self.reap_every_s):
                return

    def stop(self, timeout: float = 30.0) -> None:
        """Finish the meme in hand, then stop (unfinished memes stay queued in the database)."""
        self._stop.set()
        self.manager.stopping.set()
        for thread in self._threads:
            thread.join(timeout)

    def wait(self) -> None:
        for thread in self._threads:
            while thread.is_alive():
                thread.join(0.5)


def start_in_process(core, concurrency: int = 1) -> WorkerHandle:
    """Consumer threads inside this process (what `memesearch serve` uses)."""
    return WorkerHandle(core, concurrency).start()
