"""Bulk runs and their per-meme work items, for the jobs layer (memesearch.jobs).

A mixin of SqliteStore: it uses the store's ``write()`` transactions and
``query()``. The database is the source of truth for what is left to do; the
queue (Huey) only wakes workers up. Claims are leases: a worker killed while
holding one leaves an expired lease that ``requeue_expired_leases`` hands back.
"""

from __future__ import annotations

import json
import time

_RUN_FIELDS = {"state", "error", "started_at", "finished_at", "kicked_at", "params"}
_ITEM_STATES = ("queued", "running", "done", "failed", "cancelled")


class SqliteRunsMixin:
    def create_run(self, kind: str, model: str | None, params: dict) -> int:
        with self.write() as conn:
            cursor = conn.execute(
                "INSERT INTO runs (kind, model, state, params, created_at) VALUES (?, ?, 'queued', ?, ?)",
                (kind, model, json.dumps(params), time.time()),
            )
            return cursor.lastrowid

    def add_run_items(self, run_id: int, meme_ids: list[int]) -> None:
        with self.write() as conn:
            conn.executemany(
                "INSERT OR IGNORE INTO run_items (run_id, meme_id, status) VALUES (?, ?, 'queued')",
                [(run_id, meme_id) for meme_id in meme_ids],
            )

    def update_run(self, run_id: int, **fields) -> None:
        """Set some of: state, error, started_at, finished_at, kicked_at, params (a dict)."""
        unknown = set(fields) - _RUN_FIELDS
        if unknown:
            raise ValueError(f"unknown run fields: {sorted(unknown)}")
        if not fields:
            return
        if "params" in fields:
            fields["params"] = json.dumps(fields["params"])
        assignments = ", ".join(f"{name} = ?" for name in fields)
        with self.write() as conn:
            conn.execute(f"UPDATE runs SET {assignments} WHERE id = ?", (*fields.values(), run_id))

    def get_run_row(self, run_id: int, recent_s: float = 60.0) -> dict | None:
        """The run's row plus item counts per status and ``recent_done`` / ``recent_since``
        (items finished in the last ``recent_s`` seconds, and the earliest such finish)."""
        if not -(2**63) <= run_id < 2**63:  # beyond SQLite's integers: no such run (not an OverflowError)
            return None
        rows = self.query("SELECT * FROM runs WHERE id = ?", (run_id,))
        if not rows:
            return None
        return self._with_counts(dict(rows[0]), recent_s)

    def list_run_rows(self, limit: int = 20) -> list[dict]:
        rows = self.query("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,))
        return [self._with_counts(dict(row), 60.0) for row in rows]

    def _with_counts(self, run: dict, recent_s: float) -> dict:
        run["params"] = json.loads(run["params"] or "{}")
        counts = dict.fromkeys(_ITEM_STATES, 0)
        for row in self.query("SELECT status, COUNT(*) FROM run_items WHERE run_id = ? GROUP BY status", (run["id"],)):
            counts[row[0]] = row[1]
        run["counts"] = counts
        since = time.time() - recent_s
        recent = self.query(
            "SELECT COUNT(*), MIN(finished_at) FROM run_items WHERE run_id = ? AND status IN ('done', 'failed') "
            "AND finished_at > ?", (run["id"], since),
        )[0]
        run["recent_done"], run["recent_since"] = recent[0], recent[1]
        return run

    def runs_in_state(self, states: tuple[str, ...]) -> list[int]:
        marks = ",".join("?" * len(states))
        return [row[0] for row in self.query(f"SELECT id FROM runs WHERE state IN ({marks}) ORDER BY id", states)]

    def claim_run_items(self, run_id: int, limit: int, lease_s: float) -> list[int]:
        """Atomically take up to ``limit`` due queued items of an active run, leased for ``lease_s``."""
        now = time.time()
        with self.write() as conn:
            active = conn.execute("SELECT state FROM runs WHERE id = ?", (run_id,)).fetchone()
            if active is None or active[0] not in ("queued", "running"):
                return []
            ids = [row[0] for row in conn.execute(
                "SELECT meme_id FROM run_items WHERE run_id = ? AND status = 'queued' "
                "AND (lease_until IS NULL OR lease_until <= ?) ORDER BY meme_id LIMIT ?",
                (run_id, now, limit),
            )]
            conn.executemany(
                "UPDATE run_items SET status = 'running', lease_until = ? WHERE run_id = ? AND meme_id = ?",
                [(now + lease_s, run_id, meme_id) for meme_id in ids],
            )
            return ids

    def extend_run_leases(self, run_id: int, meme_ids: list[int], lease_s: float) -> None:
        with self.write() as conn:
            conn.executemany(
                "UPDATE run_items SET lease_until = ? WHERE run_id = ? AND meme_id = ? AND status = 'running'",
                [(time.time() + lease_s, run_id, meme_id) for meme_id in meme_ids],
            )

    def finish_run_item(self, run_id: int, meme_id: int, status: str, error: str | None = None,
                        retry_at: float | None = None) -> bool:
        """End a claim: 'done', 'failed' (attempts + 1) or back to 'queued' until ``retry_at``
        (a transient failure, attempts + 1). False if the item was no longer claimed."""
        if status not in ("done", "failed", "queued"):
            raise ValueError(f"cannot finish a run item as {status!r}")
        now = time.time()
        attempts = 0 if status == "done" else 1
        with self.write() as conn:
            cursor = conn.execute(
                "UPDATE run_items SET status = ?, error = ?, attempts = attempts + ?, lease_until = ?, finished_at = ? "
                "WHERE run_id = ? AND meme_id = ? AND status = 'running'",
                (status, error, attempts, retry_at if status == "queued" else None,
                 None if status == "queued" else now, run_id, meme_id),
            )
            return cursor.rowcount == 1

    def item_attempts(self, run_id: int, meme_id: int) -> int:
        rows = self.query("SELECT attempts FROM run_items WHERE run_id = ? AND meme_id = ?", (run_id, meme_id))
        return rows[0][0] if rows else 0

    def requeue_expired_leases(self) -> list[int]:
        """Put items whose worker vanished (lease expired) back to 'queued'; returns their run ids."""
        now = time.time()
        with self.write() as conn:
            run_ids = [row[0] for row in conn.execute(
                "SELECT DISTINCT run_id FROM run_items WHERE status = 'running' AND lease_until < ?", (now,))]
            conn.execute("UPDATE run_items SET status = 'queued', lease_until = NULL "
                         "WHERE status = 'running' AND lease_until < ?", (now,))
            return run_ids

    def set_run_items_status(self, run_id: int, from_status: str, to_status: str) -> int:
        """Move every item of a run from one status to another (cancel: queued -> cancelled;
        retry: failed -> queued, which also resets attempts and the error)."""
        with self.write() as conn:
            if to_status == "queued":
                sql = ("UPDATE run_items SET status = 'queued', attempts = 0, error = NULL, lease_until = NULL, "
                       "finished_at = NULL WHERE run_id = ? AND status = ?")
                return conn.execute(sql, (run_id, from_status)).rowcount
            sql = "UPDATE run_items SET status = ?, finished_at = ? WHERE run_id = ? AND status = ?"
            return conn.execute(sql, (to_status, time.time(), run_id, from_status)).rowcount

    def run_errors(self, run_id: int, limit: int = 50) -> list[dict]:
        """Failed items of a run, latest first, with the meme's path."""
        rows = self.query(
            "SELECT i.meme_id, m.path, i.error FROM run_items i LEFT JOIN memes m ON m.id = i.meme_id "
            "WHERE i.run_id = ? AND i.status = 'failed' ORDER BY i.finished_at DESC LIMIT ?", (run_id, limit),
        )
        return [{"meme_id": row[0], "path": row[1] or "", "error": row[2] or ""} for row in rows]

    def vector_hash(self, meme_id: int, model_id: str, *, stage: str = "embed") -> str | None:
        """The hash of one meme's stored vector, if its ``stage`` is done (else None)."""
        rows = self.query(
            "SELECT v.text_hash FROM vectors v JOIN stages s ON s.meme_id = v.meme_id AND s.stage = ? "
            "WHERE v.meme_id = ? AND v.model_id = ? AND s.status = 'done'", (stage, meme_id, model_id),
        )
        return rows[0][0] if rows else None
