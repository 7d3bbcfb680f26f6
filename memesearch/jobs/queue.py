"""The Huey instance: SQLite file in the data dir by default, Redis when queue_url says so.

Huey only delivers "work on run N" messages. It does not re-deliver a message
whose worker was killed, which is fine: the reaper re-enqueues runs whose
items are left with expired leases (memesearch.jobs.reaper).
"""

from __future__ import annotations

from collections.abc import Callable

from memesearch.config import Settings
from memesearch.errors import ConfigError, require

QUEUE_NAME = "memesearch"
WORK_TASK = "memesearch_work"


def build_huey(settings: Settings):
    from huey import MemoryHuey, RedisHuey, SqliteHuey

    from memesearch.readonly import is_read_only

    url = settings.queue_url.strip()
    if not url and is_read_only(settings.home):
        # Nothing can be queued in a read-only data dir (runs are refused), and listing runs
        # must not create queue.db there.
        return MemoryHuey(QUEUE_NAME, results=False, utc=True)
    if not url:
        settings.home.mkdir(parents=True, exist_ok=True)
        return SqliteHuey(QUEUE_NAME, filename=str(settings.home / "queue.db"), results=False, utc=True)
    if url.startswith(("redis://", "rediss://", "unix://")):
        require("redis", extra="redis", purpose="The Redis queue")
        return RedisHuey(QUEUE_NAME, url=url, results=False, utc=True)
    raise ConfigError(f"unsupported queue_url {url!r}", hint="leave it empty (SQLite) or use redis://host:6379/0")


def register_work_task(huey, work: Callable[[int], None]):
    """The one task type: process a run's queued items until none is left."""
    return huey.task(name=WORK_TASK)(work)
