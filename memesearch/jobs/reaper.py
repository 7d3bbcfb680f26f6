"""Periodic upkeep, run by every worker: expired leases, stalled runs, due retries, auto-rescans.

Huey forgets a message once a worker has taken it, even if that worker is then
killed; the database does not. This is what turns a `kill -9` into a short
delay instead of lost work.
"""

from __future__ import annotations

import logging
import time

from memesearch.jobs.manager import FANOUT, JobManager
from memesearch.jobs.models import ACTIVE_STATES

log = logging.getLogger(__name__)


def kick_interval_s(lease_s: float) -> float:
    """How long a run with queued items and nobody on it waits before another nudge."""
    return max(2.0, min(lease_s, 30.0))


def tick(manager: JobManager, now: float | None = None) -> dict:
    """One pass; returns what it did (for logs and tests)."""
    store = manager.store
    now = time.time() if now is None else now
    recovered = store.requeue_expired_leases()
    for run_id in recovered:
        log.warning("run %d: re-queued memes whose worker stopped (lease expired)", run_id)
    kicked = []
    for run_id in store.runs_in_state(ACTIVE_STATES):
        row = store.get_run_row(run_id)
        counts = row["counts"]
        unscanned = row["kind"] == "index" and not row["params"].get("scanned")
        if counts["running"] or not (counts["queued"] or unscanned):
            manager.finish_if_complete(run_id)
            continue
        stale = row["kicked_at"] is None or now - row["kicked_at"] >= kick_interval_s(manager.settings.job_lease_s)
        if run_id in recovered or stale:
            manager.enqueue(run_id, 1 if unscanned else min(FANOUT, counts["queued"]))
            kicked.append(run_id)
    started = rescan_due_folders(manager, now)
    return {"recovered": recovered, "kicked": kicked, "rescans": started}


def rescan_due_folders(manager: JobManager, now: float) -> list[int]:
    """Start an index run for each folder whose auto-scan interval has passed."""
    recent = manager.store.list_run_rows(100)
    started = []
    for folder in manager.store.list_folders():
        if folder.auto_scan_minutes <= 0:
            continue
        interval = folder.auto_scan_minutes * 60
        if folder.last_scan_at is not None and now - folder.last_scan_at < interval:
            continue
        # Not while one is pending, nor again before the interval if the last one could not scan.
        if any(r["kind"] == "index" and r["params"].get("folder_id") == folder.id
               and (r["state"] in ACTIVE_STATES or now - r["created_at"] < interval) for r in recent):
            continue
        run = manager.start("index", folder_id=folder.id)
        log.info("auto-rescan of %s: run %d", folder.path, run.id)
        started.append(run.id)
    return started
