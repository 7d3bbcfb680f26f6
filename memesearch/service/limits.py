"""Back-pressure for the service: a hard cap on concurrent inference and on request bodies.

Inference beyond ``max_concurrency`` is refused at once with 503 + Retry-After
instead of queueing without bound; the client fails over or backs off.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

from memesearch.problems import problem_response

T = TypeVar("T")


class Busy(Exception):
    """Every inference slot is taken."""


class InferenceRunner:
    """Runs blocking model calls in a bounded thread pool; refuses work beyond its size."""

    def __init__(self, max_concurrency: int) -> None:
        self.max_concurrency = max(1, max_concurrency)
        self._executor = ThreadPoolExecutor(max_workers=self.max_concurrency, thread_name_prefix="infer")
        self._slots = threading.BoundedSemaphore(self.max_concurrency)
        self._lock = threading.Lock()
        self.in_flight = 0
        self.rejected = 0

    async def run(self, func: Callable[..., T], *args) -> T:
        if not self._slots.acquire(blocking=False):
            with self._lock:
                self.rejected += 1
            raise Busy()
        with self._lock:
            self.in_flight += 1
        try:
            return await asyncio.get_running_loop().run_in_executor(self._executor, func, *args)
        finally:
            with self._lock:
                self.in_flight -= 1
            self._slots.release()

    def shutdown(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


class _TooLarge(Exception):
    pass


class BodyLimitMiddleware:
    """ASGI middleware: 413 for bodies over ``max_bytes``, by header or while streaming."""

    def __init__(self, app, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        declared = dict(scope.get("headers") or []).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            return await self._refuse(scope, receive, send)
        seen = 0
        started = False

        async def counting_receive():
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > self.max_bytes:
                    raise _TooLarge()
            return message

        async def tracking_send(message):
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except _TooLarge:
            if not started:
                await self._refuse(scope, receive, send)

    async def _refuse(self, scope, receive, send):
        limit_mb = self.max_bytes / 1e6
        response = problem_response(413, f"request body too large (limit {limit_mb:g} MB)", instance=scope.get("path"))
        await response(scope, receive, send)
