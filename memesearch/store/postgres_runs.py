"""Bulk runs and their per-meme work items on PostgreSQL (mirrors ``sqlite_runs``).

Same methods and semantics as SqliteRunsMixin. The difference that matters
with many workers on many machines: claims use ``FOR UPDATE SKIP LOCKED``, so
concurrent workers never take the same item and never wait on each other.
"""

from __future__ import annotations

import json
import time

_RUN_FIELDS = {"state", "error", "started_at", "finished_at", "kicked_at", "params"}
_ITEM_STATES = ("queued", "running", "done", "failed", "cancelled")


class PostgresRunsMixin:
    def create_run(self, kind: str, model: str | None, params: dict) -> int:
        with self.write() as conn:
            return conn.execute(
                "INSERT INTO runs (kind, model, state, params, created_at) VALUES (%s, %s, 'queued', %s, %s) RETURNING id",
                (kind, model, json.dumps(params), time.time()),
            ).fetchone()["id"]

    def add_run_items(self, run_id: int, meme_ids: list[int]) -> None:
        with self.write() as conn:
            conn.execute(
                "INSERT INTO run_items (run_id, meme_id, status) SELECT %s, id, 'queued' FROM unnest(%s::bigint[]) AS id "
                "ON CONFLICT DO NOTHING", (run_id, list(meme_ids)),
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
        assignments = ", ".join(f"{name} = %s" for name in fields)
        with self.write() as conn:
            conn.execute(f"UPDATE runs SET {assignments} WHERE id = %s", (*fields.values(), run_id))

    def get_run_row(self, run_id: int, recent_s: float = 60.0) -> dict | None:
        if not -(2**63) <= run_id < 2**63:  # beyond bigint: no such run (not a database error)
            return None
        rows = self.query("SELECT * FROM runs WHERE id = %s", (run_id,))
        return self._with_counts(dict(rows[0]), recent_s) if rows else None

    def list_run_rows(self, limit: int = 20) -> list[dict]:
        return [self._with_counts(dict(row), 60.0) for row in self.query("SELECT * FROM runs ORDER BY id DESC LIMIT %s", (limit,))]

    def _with_counts(self, run: dict, recent_s: float) -> dict:
        run["params"] = json.loads(run["params"] or "{}")
        counts = dict.fromkeys(_ITEM_STATES, 0)
        for row in self.query("SELECT status, COUNT(*) AS n FROM run_items WHERE run_id = %s GROUP BY status", (run["id"],)):
            counts[row["status"]] = row["n"]
        run["counts"] = counts
        recent = self.query(
            "SELECT COUNT(*) AS n, MIN(finished_at) AS since FROM run_items WHERE run_id = %s "
            "AND status IN ('done', 'failed') AND finished_at > %s", (run["id"], time.time() - recent_s),
        )[0]
        run["recent_done"], run["recent_since"] = recent["n"], recent["since"]
        return run

    def runs_in_state(self, states: tuple[str, ...]) -> list[int]:
        return [row["id"] for row in self.query("SELECT id FROM runs WHERE state = ANY(%s) ORDER BY id", (list(states),))]

    def claim_run_items(self, run_id: int, limit: int, lease_s: float) -> list[int]:
        """Atomically take up to ``limit`` due queued items of an active run, leased for ``lease_s``."""
        now = time.time()
        with self.write() as conn:
            active = conn.execute("SELECT state FROM runs WHERE id = %s", (run_id,)).fetchone()
            if active is None or active["state"] not in ("queued", "running"):
                return []
            rows = conn.execute(
                "UPDATE run_items SET status = 'running', lease_until = %s WHERE run_id = %s AND meme_id IN "
                "(SELECT meme_id FROM run_items WHERE run_id = %s AND status = 'queued' "
                "AND (lease_until IS NULL OR lease_until <= %s) ORDER BY meme_id LIMIT %s FOR UPDATE SKIP LOCKED) "
                "RETURNING meme_id",
                (now + lease_s, run_id, run_id, now, limit),
            ).fetchall()
            return sorted(row["meme_id"] for row in rows)

    def extend_run_leases(self, run_id: int, meme_ids: list[int], lease_s: float) -> None:
        with self.write() as conn:
            conn.execute("UPDATE run_items SET lease_until = %s WHERE run_id = %s AND meme_id = ANY(%s) AND status = 'running'",
                         (time.time() + lease_s, run_id, list(meme_ids)))

    def finish_run_item(self, run_id: int, meme_id: int, status: str, error: str | None = None,
                        retry_at: float | None = None) -> bool:
        """End a claim: 'done', 'failed' (attempts + 1) or back to 'queued' until ``retry_at``
        (a transient failure, attempts + 1). False if the item was no longer claimed."""
        if status not in ("done", "failed", "queued"):
            raise ValueError(f"cannot finish a run item as {status!r}")
        now = time.time()
        with self.write() as conn:
            cursor = conn.execute(
                "UPDATE run_items SET status = %s, error = %s, attempts = attempts + %s, lease_until = %s, finished_at = %s "
                "WHERE run_id = %s AND meme_id = %s AND status = 'running'",
                (status, error, 0 if status == "done" else 1, retry_at if status == "queued" else None,
                 None if status == "queued" else now, run_id, meme_id),
            )
            return cursor.rowcount == 1

    def item_attempts(self, run_id: int, meme_id: int) -> int:
        rows = self.query("SELECT attempts FROM run_items WHERE run_id = %s AND meme_id = %s", (run_id, meme_id))
        return rows[0]["attempts"] if rows else 0

    def requeue_expired_leases(self) -> list[int]:
        """Put items whose worker vanished (lease expired) back to 'queued'; returns their run ids."""
        with self.write() as conn:
            rows = conn.execute(
                "UPDATE run_items SET status = 'queued', lease_until = NULL WHERE status = 'running' AND lease_until < %s "
                "RETURNING run_id", (time.time(),),
            ).fetchall()
            return sorted({row["run_id"] for row in rows})

    def set_run_items_status(self, run_id: int, from_status: str, to_status: str) -> int:
        """Move every item of a run from one status to another (cancel: queued -> cancelled;
        retry: failed -> queued, which also resets attempts and the error)."""
        with self.write() as conn:
            if to_status == "queued":
                sql = ("UPDATE run_items SET status = 'queued', attempts = 0, error = NULL, lease_until = NULL, "
                       "finished_at = NULL WHERE run_id = %s AND status = %s")
                return conn.execute(sql, (run_id, from_status)).rowcount
            sql = "UPDATE run_items SET status = %s, finished_at = %s WHERE run_id = %s AND status = %s"
            return conn.execute(sql, (to_status, time.time(), run_id, from_status)).rowcount

    def run_errors(self, run_id: int, limit: int = 50) -> list[dict]:
        """Failed items of a run, latest first, with the meme's path."""
        rows = self.query(
            "SELECT i.meme_id, m.path, i.error FROM run_items i LEFT JOIN memes m ON m.id = i.meme_id "
            "WHERE i.run_id = %s AND i.status = 'failed' ORDER BY i.finished_at DESC LIMIT %s", (run_id, limit),
        )
        return [{"meme_id": row["meme_id"], "path": row["path"] or "", "error": row["error"] or ""} for row in rows]

    def vector_hash(self, meme_id: int, model_id: str, *, stage: str = "embed") -> str | None:
        """The hash of one meme's stored vector, if its ``stage`` is done (else None)."""
        rows = self.query(
            "SELECT v.text_hash FROM vectors v JOIN stages s ON s.meme_id = v.meme_id AND s.stage = %s "
            "WHERE v.meme_id = %s AND v.model_id = %s AND s.status = 'done'", (stage, meme_id, model_id),
        )
        return rows[0]["text_hash"] if rows else None
