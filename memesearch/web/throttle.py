"""Throttling of wrong passwords and API tokens (the ``limits`` library, moving windows).

Two sets of tiers, e.g. per client ``5/minute;20/hour;100/day`` and for all clients
together ``60/minute;600/hour``: a client past a tier waits until that tier's window
frees a slot (HTTP 429 + Retry-After), so each further tier means a longer wait, and many
clients together cannot out-guess the global tiers either. A password attempt is counted
before it is checked (parallel guesses cannot slip through); the right password clears the
client's own count. A bearer token is counted only when wrong (scripts make many calls). Counts live in this process's memory
(a restart forgets them; several web processes each count on their own).
"""

from __future__ import annotations

import math
import threading
import time

from limits import RateLimitItem, parse_many
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

ALL_CLIENTS = "*"


class LoginThrottle:
    def __init__(self, per_client: str, overall: str) -> None:
        self._limiter = MovingWindowRateLimiter(MemoryStorage())
        self._lock = threading.RLock()  # check-and-count as one step: login requests run in threads
        self._per_client = parse_many(per_client)
        self._overall = parse_many(overall)

    def _tiers(self, client: str) -> list[tuple[RateLimitItem, str, str]]:
        return ([(item, "client", client) for item in self._per_client]
                + [(item, "all", ALL_CLIENTS) for item in self._overall])

    def retry_after(self, client: str) -> int:
        """Seconds ``client`` must wait before its next attempt; 0 when it may try now."""
        now = time.time()
        with self._lock:
            waits = [self._limiter.get_window_stats(item, scope, key).reset_time - now
                     for item, scope, key in self._tiers(client) if not self._limiter.test(item, scope, key)]
        return max(1, math.ceil(max(waits))) if waits else 0

    def attempt(self, client: str) -> int:
        """Count a password attempt before it is checked, so parallel guesses cannot slip
        past the limit; returns the seconds to wait (0: go ahead, counted)."""
        with self._lock:
            wait = self.retry_after(client)
            if not wait:
                self.failed(client)
            return wait

    def failed(self, client: str) -> None:
        with self._lock:
            for item, scope, key in self._tiers(client):
                self._limiter.hit(item, scope, key)

    def succeeded(self, client: str) -> None:
        """The right answer: the attempt (and earlier misses) no longer count against ``client``."""
        with self._lock:
            for item in self._per_client:
                self._limiter.clear(item, "client", client)
