"""Embed concurrent search queries together.

A short query is a skinny matrix product (a dozen tokens), which a CPU runs far below its
peak; eight queries in one model call cost about half as much each as eight separate calls
(measured on MiniLM, see docs/BENCHMARKS.md). So under load the web server's request threads
hand their query texts to one embedding thread, which takes everything waiting, up to
``max_batch``, in a single call. A lone query never waits for company: the thread takes
whatever is queued the moment it is free, so with no concurrency each batch has one query.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future

import numpy as np

#: The embedding thread exits after this many idle seconds and is restarted on demand,
#: so short-lived engines (CLI runs, tests) leave no thread behind for long.
IDLE_SECONDS = 30.0


class QueryBatcher:
    def __init__(self, embed_many: Callable[[Sequence[str]], np.ndarray], max_batch: int = 16) -> None:
        self._embed_many = embed_many
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[tuple[str, Future]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def embed(self, text: str) -> np.ndarray:
        """The query's vector; errors of the model call are raised here, in the caller."""
        future: Future = Future()
        self._queue.put((text, future))
        self._ensure_thread()
        return future.result()

    def _ensure_thread(self) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="query-embedder", daemon=True)
                self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                first = self._queue.get(timeout=IDLE_SECONDS)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():  # a caller that queued meanwhile sees a dead thread and restarts it
                        self._thread = None
                        return
                continue
            batch = [first]
            while len(batch) < self._max_batch:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            self._answer(batch)

    def _answer(self, batch: list[tuple[str, Future]]) -> None:
        try:
            vectors = self._embed_many([text for text, _ in batch])
        except BaseException as exc:  # noqa: BLE001 - every waiting caller must get the error
            for _, future in batch:
                future.set_exception(exc)
            return
        for (_, future), vector in zip(batch, vectors):
            future.set_result(vector)
