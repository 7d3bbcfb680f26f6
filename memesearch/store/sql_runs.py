"""Bulk runs and their per-meme work items, for the jobs layer (memesearch.jobs), on both databases.

A mixin of SqlStore: it uses the store's ``write()`` transactions, ``_query()`` and
dialect. The database is the source of truth for what is left to do; the queue
(Huey) only wakes workers up. Claims are leases: a worker killed while holding one
leaves an expired lease that ``requeue_expired_leases`` hands back. Claims lock the
rows they pick with the dialect's ``skip_locked`` (PostgreSQL: concurrent workers
never take the same item and never wait on each other; SQLite writes one at a time).
"""

from __future__ import annotations

import json
import time

_RUN_FIELDS = {"state", "error", "started_at", "finished_at", "kicked_at", "params"}
_ITEM_STATES = ("queued", "running", "done", "failed", "cancelled")


class RunsMixin:
    def create_run(self, kind: str, model: str | None, params: dict, meme_ids: list[int] | None = None) -> int:
        """A new queued run, with ``meme_ids`` as its items in the same transaction: the reaper
        must never see the run without them (it would close it as done with nothing to do)."""
        with self.write() as conn:
            run_id = self._exec(conn, "INSERT INTO runs (kind, model, state, params, created_at) "
                                      "VALUES (?, ?, 'queued', ?, ?) RETURNING id",
                                (kind, model, json.dumps(params), time.time())).fetchall()[0]["id"]
            if meme_ids:
                self._insert_run_items(conn, run_id, meme_ids)
            return run_id

    def add_run_items(self, run_id: int, meme_ids: list[int]) -> None:
        with self.write() as conn:
            self._insert_run_items(conn, run_id, meme_ids)

    def _insert_run_items(self, conn, run_id: int, meme_ids: list[int]) -> None:
        self._exec(conn, f"INSERT INTO run_items (run_id, meme_id, status) SELECT ?, value, 'queued' "
                         f"FROM {self.dialect.list_table()} WHERE TRUE ON CONFLICT DO NOTHING",
                   (run_id, self.dialect.list_param(meme_ids)))

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
            self._exec(conn, f"UPDATE runs SET {assignments} WHERE id = ?", (*fields.values(), run_id))

    def get_run_row(self, run_id: int, recent_s: float = 60.0) -> dict | None:
        """The run's row plus item counts per status and ``recent_done`` / ``recent_since``
        (items finished in the last ``recent_s`` seconds, and the earliest such finish)."""
        if not -(2**63) <= run_id < 2**63:  # beyond 64-bit integers: no such run (not a database error)
            return None
        rows = self._query("SELECT * FROM runs WHERE id = ?", (run_id,))
        return self._with_counts(dict(rows[0]), recent_s) if rows else None

    def list_run_rows(self, limit: int = 20) -> list[dict]:
        return [self._with_counts(dict(row), 60.0) for row in self._query("SELECT * FROM runs ORDER BY id DESC LIMIT ?", (limit,))]

    def _with_counts(self, run: dict, recent_s: float) -> dict:
        run["params"] = json.loads(run["params"] or "{}")
        counts = dict.fromkeys(_ITEM_STATES, 0)
        for row in self._query("SELECT status, COUNT(*) AS n FROM run_items WHERE run_id = ? GROUP BY status", (run["id"],)):
            counts[row["status"]] = row["n"]
        run["counts"] = counts
        recent = self._query(
            "SELECT COUNT(*) AS n, MIN(finished_at) AS since FROM run_items WHERE run_id = ? "
            "AND status IN ('done', 'failed') AND finished_at > ?", (run["id"], time.time() - recent_s),
        )[0]
        run["recent_done"], run["recent_since"] = recent["n"], recent["since"]
        return run

    def runs_in_state(self, states: tuple[str, ...]) -> list[int]:
        rows = self._query(f"SELECT id FROM runs WHERE {self.dialect.in_list('state', 'text')} ORDER BY id",
                           (self.dialect.list_param(states),))
        return [row["id"] for row in rows]

    def claim_run_items(self, run_id: int, limit: int, lease_s: float) -> list[int]:
        """Atomically take up to ``limit`` due queued items of an active run, leased for ``lease_s``."""
        now = time.time()
        with self.write() as conn:
            active = self._exec(conn, "SELECT state FROM runs WHERE id = ?", (run_id,)).fetchone()
            if active is None or active["state"] not in ("queued", "running"):
                return []
            rows = self._exec(
                conn,
                "UPDATE run_items SET status = 'running', lease_until = ? WHERE run_id = ? AND meme_id IN "
                "(SELECT meme_id FROM run_items WHERE run_id = ? AND status = 'queued' "
                f"AND (lease_until IS NULL OR lease_until <= ?) ORDER BY meme_id LIMIT ?{self.dialect.skip_locked}) "
                "RETURNING meme_id",
                (now + lease_s, run_id, run_id, now, limit),
            ).fetchall()
            return sorted(row["meme_id"] for row in rows)

    def extend_run_leases(self, run_id: int, meme_ids: list[int], lease_s: float) -> None:
        with self.write() as conn:
            self._exec(conn, f"UPDATE run_items SET lease_until = ? WHERE run_id = ? AND "
                             f"{self.dialect.in_list('meme_id')} AND status = 'running'",
                       (time.time() + lease_s, run_id, self.dialect.list_param(meme_ids)))

    def finish_run_item(self, run_id: int, meme_id: int, status: str, error: str | None = None,
                        retry_at: float | None = None) -> bool:
        """End a claim: 'done', 'failed' (attempts + 1) or back to 'queued' until ``retry_at``
        (a transient failure, attempts + 1). False if the item was no longer claimed."""
        if status not in ("done", "failed", "queued"):
            raise ValueError(f"cannot finish a run item as {status!r}")
        now = time.time()
        with self.write() as conn:
            cursor = self._exec(
                conn,
                "UPDATE run_items SET status = ?, error = ?, attempts = attempts + ?, lease_until = ?, finished_at = ? "
                "WHERE run_id = ? AND meme_id = ? AND status = 'running'",
                (status, error, 0 if status == "done" else 1, retry_at if status == "queued" else None,
                 None if status == "queued" else now, run_id, meme_id),
            )
            return cursor.rowcount == 1

    def item_attempts(self, run_id: int, meme_id: int) -> int:
        rows = self._query("SELECT attempts FROM run_items WHERE run_id = ? AND meme_id = ?", (run_id, meme_id))
        return rows[0]["attempts"] if rows else 0

    def requeue_expired_leases(self) -> list[int]:
        """Put items whose worker vanished (lease expired) back to 'queued'; returns their run ids."""
        with self.write() as conn:
            rows = self._exec(conn, "UPDATE run_items SET status = 'queued', lease_until = NULL "
                                    "WHERE status = 'running' AND lease_until < ? RETURNING run_id",
                              (time.time(),)).fetchall()
            return sorted({row["run_id"] for row in rows})

    def set_run_items_status(self, run_id: int, from_status: str, to_status: str) -> int:
        """Move every item of a run from one status to another (cancel: queued -> cancelled;
        retry: failed -> queued, which also resets attempts and the error)."""
        with self.write() as conn:
            if to_status == "queued":
                sql = ("UPDATE run_items SET status = 'queued', attempts = 0, error = NULL, lease_until = NULL, "
                       "finished_at = NULL WHERE run_id = ? AND status = ?")
                return self._exec(conn, sql, (run_id, from_status)).rowcount
            sql = "UPDATE run_items SET status = ?, finished_at = ? WHERE run_id = ? AND status = ?"
            return self._exec(conn, sql, (to_status, time.time(), run_id, from_status)).rowcount

    def run_errors(self, run_id: int, limit: int = 50) -> list[dict]:
        """Failed items of a run, latest first, with the meme's path."""
        rows = self._query(
            "SELECT i.meme_id, m.path, i.error FROM run_items i LEFT JOIN memes m ON m.id = i.meme_id "
            "WHERE i.run_id = ? AND i.status = 'failed' ORDER BY i.finished_at DESC LIMIT ?", (run_id, limit),
        )
        return [{"meme_id": row["meme_id"], "path": row["path"] or "", "error": row["error"] or ""} for row in rows]
