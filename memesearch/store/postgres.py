"""The scale-out store: PostgreSQL with pgvector (HNSW) and pg_trgm, same contract as SqliteStore.

One connection per store object, serialised by a lock (like the SQLite store);
several processes and machines each open their own. Writes go through
``write()``, one transaction each; every statement that changes a meme's text
or tags refreshes its search row in the same transaction. Vector search runs
in the database (``vector_search``), so nothing loads millions of vectors into
memory. psycopg is imported here only; ``open_store`` imports this module
lazily so SQLite users never need it.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

import numpy as np

from memesearch.errors import ConfigError, InvalidInputError, NotFoundError, SchemaTooNewError, require
from memesearch.store import postgres_text, roots
from memesearch.store.care import LibraryCareMixin
from memesearch.store.postgres_runs import PostgresRunsMixin
from memesearch.store.postgres_vectors import VectorMethods, bump_vectors_version
from memesearch.store.models import Description, FileRecord, Filters, Folder, Meme
from memesearch.store.schema_postgres import MIGRATIONS, SCHEMA_VERSION
from memesearch.store.transfer import pending_columns, pending_for_new_meme, relative_keys
from memesearch.text import clean_tag as _clean_tag, clean_text

_MEME_COLUMNS = (
    "id, path, folder_id, sha256, phash, size, mtime, width, height, format, frames, status, "
    "error, duplicate_of, ocr_text, ocr_engine, user_description, added_at, updated_at"
)
_FILE_FIELDS = ("folder_id", "size", "mtime", "sha256", "phash", "width", "height", "format", "frames", "status", "error")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1
_MIGRATION_LOCK = 7_316_001  # advisory lock id: one migrator at a time across processes


class PostgresStore(VectorMethods, PostgresRunsMixin, LibraryCareMixin):
    kind = "postgres"
    _MARK = "%s"

    # LibraryCareMixin hooks (the search row goes with the meme row: ON DELETE CASCADE).
    def _reindex_meme(self, conn, meme_id: int) -> None:
        postgres_text.reindex(conn, meme_id)

    def _unindex_meme(self, conn, meme_id: int) -> None:
        pass

    def _bump_vectors(self, conn) -> None:
        bump_vectors_version(conn)

    def __init__(self, url: str, *, migrate: bool = True) -> None:
        psycopg = require("psycopg", extra="postgres", purpose="The PostgreSQL store")
        from psycopg.rows import dict_row

        self.url = url
        self._lock = threading.RLock()
        self._open = lambda: psycopg.connect(url, autocommit=True, row_factory=dict_row)
        try:
            self._conn = self._open()
        except psycopg.OperationalError as exc:
            raise ConfigError(f"cannot connect to PostgreSQL: {exc}".strip(),
                              hint="check MEMESEARCH_DATABASE_URL and that the server is running") from exc
        if migrate:
            self.migrate()

    def _live(self):
        """The connection, reopened if the server dropped it (restart, failover): the call that
        saw the failure fails, the next one works. Callers hold ``_lock``."""
        if self._conn.broken:
            self._conn = self._open()
        return self._conn

    # -- plumbing -----------------------------------------------------------------
    def migrate(self) -> int:
        """Run pending migrations; returns how many ran. Refuses a schema newer than this code."""
        with self.write() as conn:
            conn.execute("SELECT pg_advisory_xact_lock(%s)", (_MIGRATION_LOCK,))
            conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
            row = conn.execute("SELECT version FROM schema_version").fetchone()
            current = row["version"] if row else 0
            if row is None:
                conn.execute("INSERT INTO schema_version (version) VALUES (0)")
            if current > SCHEMA_VERSION:
                raise SchemaTooNewError(
                    f"the PostgreSQL database has schema version {current}, but this memesearch "
                    f"understands up to version {SCHEMA_VERSION}",
                    hint="upgrade memesearch on this machine (every machine sharing a database must run the same version)",
                )
            for version in range(current, SCHEMA_VERSION):
                conn.execute(MIGRATIONS[version])
                flag = conn.execute("SELECT value FROM meta WHERE key = 'search_rebuild'").fetchone()
                if flag and flag["value"] == "1":
                    postgres_text.rebuild_all(conn)
                    conn.execute("DELETE FROM meta WHERE key = 'search_rebuild'")
                conn.execute("UPDATE schema_version SET version = %s", (version + 1,))
            return SCHEMA_VERSION - current

    @property
    def schema_version(self) -> int:
        row = self.query("SELECT version FROM schema_version")
        return row[0]["version"] if row else 0

    @contextmanager
    def write(self) -> Iterator:
        """One write transaction; commits on success, rolls back on any error (Ctrl-C included)."""
        with self._lock:
            conn = self._live()
            with conn.transaction():
                yield conn

    def query(self, sql: str, params: Iterable = ()) -> list[dict]:
        """Rows as dicts (PostgreSQL placeholders: %s)."""
        with self._lock:
            return self._live().execute(sql, tuple(params)).fetchall()

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def integrity_ok(self) -> bool:
        """The schema is current and every index is valid (a failed CREATE INDEX leaves an invalid one)."""
        invalid = self.query("SELECT count(*) AS n FROM pg_index i JOIN pg_class c ON c.oid = i.indrelid "
                             "WHERE NOT i.indisvalid AND c.relnamespace = current_schema()::regnamespace")
        return self.schema_version == SCHEMA_VERSION and invalid[0]["n"] == 0

    # -- folders ------------------------------------------------------------------
    def add_folder(self, path: str) -> Folder:
        """Idempotent. Known memes under ``path`` (an outer root's, or a removed folder's) now belong
        to it; a removed folder's memes become present again when the next scan sees their files."""
        with self.write() as conn:
            conn.execute("INSERT INTO folders (path, added_at) VALUES (%s, %s) ON CONFLICT (path) DO NOTHING",
                         (path, time.time()))
            folders = [_folder(row) for row in conn.execute("SELECT * FROM folders").fetchall()]
            added = next(folder for folder in folders if folder.path == path)
            claimed = roots.reassignments(_rows_under(conn, path), folders).get(added.id, [])
            if claimed:
                conn.execute("UPDATE memes SET folder_id = %s WHERE id = ANY(%s)", (added.id, claimed))
        return self.folder_by_path(path)  # type: ignore[return-value]

    def folder_by_path(self, path: str) -> Folder | None:
        rows = self.query("SELECT * FROM folders WHERE path = %s", (path,))
        return _folder(rows[0]) if rows else None

    def list_folders(self) -> list[Folder]:
        return [_folder(row) for row in self.query("SELECT * FROM folders ORDER BY path")]

    def remove_folder(self, folder_id: int) -> None:
        """Forget a root. Its memes go to the next outer root that reaches them; the others leave the
        library (status 'missing', no folder) with their texts and tags, until a root reaches them again."""
        with self.write() as conn:
            rows = conn.execute("SELECT id, path FROM memes WHERE folder_id = %s", (folder_id,)).fetchall()
            conn.execute("DELETE FROM folders WHERE id = %s", (folder_id,))
            remaining = [_folder(row) for row in conn.execute("SELECT * FROM folders").fetchall()]
            for target, ids in roots.reassignments(rows, remaining).items():
                if target is None:
                    conn.execute("UPDATE memes SET status = 'missing', folder_id = NULL, updated_at = %s "
                                 "WHERE id = ANY(%s)", (time.time(), ids))
                else:
                    conn.execute("UPDATE memes SET folder_id = %s WHERE id = ANY(%s)", (target, ids))
            bump_vectors_version(conn)

    def set_folder_auto_scan(self, folder_id: int, minutes: int) -> None:
        """How often a folder is rescanned automatically (0 = never)."""
        if minutes < 0:
            raise InvalidInputError("the auto-scan interval cannot be negative")
        with self.write() as conn:
            if conn.execute("UPDATE folders SET auto_scan_minutes = %s WHERE id = %s", (minutes, folder_id)).rowcount == 0:
                raise NotFoundError(f"no folder with id {folder_id}")

    def folder_meme_counts(self) -> dict[int, int]:
        """Present memes per folder id."""
        rows = self.query("SELECT folder_id, COUNT(*) AS n FROM memes WHERE status = 'ok' AND folder_id IS NOT NULL "
                          "GROUP BY folder_id")
        return {row["folder_id"]: row["n"] for row in rows}

    def phashes(self) -> list[tuple[int, str]]:
        """(id, perceptual hash) of every present meme, for near-duplicate lookups."""
        return [(row["id"], row["phash"]) for row in
                self.query("SELECT id, phash FROM memes WHERE status = 'ok' AND phash IS NOT NULL")]

    def record_scan(self, folder_id: int, summary: dict) -> None:
        with self.write() as conn:
            conn.execute("UPDATE folders SET last_scan_at = %s, last_scan_json = %s WHERE id = %s",
                         (time.time(), json.dumps(summary), folder_id))

    # -- memes: files -------------------------------------------------------------
    def files_under(self, root: str) -> dict[str, dict]:
        """Every meme at or under ``root`` whatever its folder or status (see ``base.Store``)."""
        with self._lock:
            return {row["path"]: row for row in _rows_under(self._live(), root)}

    def set_folder(self, meme_ids: Iterable[int], folder_id: int) -> None:
        with self.write() as conn:
            conn.execute("UPDATE memes SET folder_id = %s WHERE id = ANY(%s)", (folder_id, list(meme_ids)))

    def files_in_folder(self, folder_id: int) -> dict[str, dict]:
        rows = self.query("SELECT id, path, size, mtime, status, sha256 FROM memes WHERE folder_id = %s", (folder_id,))
        return {row["path"]: row for row in rows}

    def memes_with_sha(self, sha256: str) -> list[dict]:
        return self.query("SELECT id, path, status FROM memes WHERE sha256 = %s ORDER BY id", (sha256,))

    def insert_file(self, record: FileRecord) -> int:
        now = time.time()
        with self.write() as conn:
            original = conn.execute(
                "SELECT id, ocr_text, ocr_engine FROM memes WHERE sha256 = %s AND status = 'ok' "
                "AND duplicate_of IS NULL ORDER BY id LIMIT 1", (record.sha256,),
            ).fetchone() if record.sha256 else None
            meme_id = conn.execute(
                f"INSERT INTO memes (path, {', '.join(_FILE_FIELDS)}, duplicate_of, ocr_text, ocr_engine, added_at, "
                f"updated_at) VALUES (%s, {', '.join(['%s'] * len(_FILE_FIELDS))}, %s, %s, %s, %s, %s) RETURNING id",
                (record.path, *(getattr(record, f) for f in _FILE_FIELDS),
                 original["id"] if original else None, original["ocr_text"] if original else "",
                 original["ocr_engine"] if original else None, now, now),
            ).fetchone()["id"]
            if original and original["ocr_engine"]:
                # Same bytes as a meme we already read: share its OCR instead of recomputing.
                _set_stage(conn, meme_id, "ocr", "done")
            self._claim_pending_import(conn, meme_id, record)
            postgres_text.reindex(conn, meme_id)
            return meme_id

    def update_file(self, meme_id: int, record: FileRecord, *, content_changed: bool) -> None:
        """Refresh what the scanner saw. Changed content drops machine-made text, keeps the user's."""
        with self.write() as conn:
            before = conn.execute("SELECT path FROM memes WHERE id = %s", (meme_id,)).fetchone()
            assignments = ", ".join(f"{f} = %s" for f in _FILE_FIELDS)
            conn.execute(f"UPDATE memes SET path = %s, {assignments}, updated_at = %s WHERE id = %s",
                         (record.path, *(getattr(record, f) for f in _FILE_FIELDS), time.time(), meme_id))
            bump_vectors_version(conn)
            if content_changed:
                conn.execute("UPDATE memes SET ocr_text = '', ocr_engine = NULL, duplicate_of = NULL WHERE id = %s", (meme_id,))
                conn.execute("DELETE FROM descriptions WHERE meme_id = %s", (meme_id,))
                conn.execute("DELETE FROM stages WHERE meme_id = %s", (meme_id,))
                postgres_text.reindex(conn, meme_id)
            elif before is not None and before["path"] != record.path:
                postgres_text.reindex(conn, meme_id, queue_embed=False)  # moved or renamed: new file-name words

    def set_status(self, meme_ids: Iterable[int], status: str) -> None:
        ids = list(meme_ids)
        with self.write() as conn:
            conn.execute("UPDATE memes SET status = %s, updated_at = %s WHERE id = ANY(%s)", (status, time.time(), ids))
            bump_vectors_version(conn)

    def missing_files(self) -> list[dict]:
        return self.query("SELECT id, path, folder_id FROM memes WHERE status = 'missing' ORDER BY id")

    def delete_memes(self, meme_ids: Iterable[int]) -> int:
        """Forget memes with their texts, tags and vectors (``prune``, for files that are gone)."""
        ids = [i for i in meme_ids if _INT64_MIN <= i <= _INT64_MAX]
        with self.write() as conn:
            count = conn.execute("DELETE FROM memes WHERE id = ANY(%s)", (ids,)).rowcount
            if count:
                bump_vectors_version(conn)
        return count

    # -- memes: reading -----------------------------------------------------------
    def get_meme(self, meme_id: int) -> Meme:
        memes = self.get_memes([meme_id])
        if not memes:
            raise NotFoundError(f"no meme with id {meme_id}")
        return memes[0]

    def get_memes(self, meme_ids: list[int]) -> list[Meme]:
        """Memes in the order of ``meme_ids`` (unknown ids are skipped)."""
        # An id PostgreSQL cannot represent (a URL like /memes/99999999999999999999) is simply unknown.
        ids = [i for i in meme_ids if _INT64_MIN <= i <= _INT64_MAX]
        if not ids:
            return []
        found = {row["id"]: Meme(**row) for row in self.query(f"SELECT {_MEME_COLUMNS} FROM memes WHERE id = ANY(%s)", (ids,))}
        for row in self.query("SELECT mt.meme_id, t.name FROM meme_tags mt JOIN tags t ON t.id = mt.tag_id "
                              "WHERE mt.meme_id = ANY(%s) ORDER BY t.name", (ids,)):
            found[row["meme_id"]].tags.append(row["name"])
        for row in self.query("SELECT * FROM descriptions WHERE meme_id = ANY(%s) ORDER BY created_at", (ids,)):
            found[row.pop("meme_id")].descriptions.append(Description(**row))
        return [found[i] for i in meme_ids if i in found]

    def meme_ids(self, *, status: str | None = "ok") -> list[int]:
        if status is None:
            return [row["id"] for row in self.query("SELECT id FROM memes ORDER BY id")]
        return [row["id"] for row in self.query("SELECT id FROM memes WHERE status = %s ORDER BY id", (status,))]

    def counts(self) -> dict[str, int]:
        row = self.query(
            "SELECT COUNT(*) AS total, COUNT(*) FILTER (WHERE status = 'ok') AS ok, "
            "COUNT(*) FILTER (WHERE status = 'missing') AS missing, COUNT(*) FILTER (WHERE status = 'error') AS errors, "
            "COUNT(duplicate_of) AS duplicates, COUNT(ocr_engine) AS ocr_done, "
            "(SELECT COUNT(DISTINCT meme_id) FROM descriptions) AS described, "
            "(SELECT COUNT(*) FROM vectors) AS vectors, (SELECT COUNT(*) FROM folders) AS folders, "
            "(SELECT COUNT(*) FROM tags) AS tags FROM memes"
        )[0]
        return {key: int(value or 0) for key, value in row.items()}

    def errors(self, limit: int = 100) -> list[tuple[str, str]]:
        rows = self.query("SELECT path, error FROM memes WHERE status = 'error' ORDER BY path LIMIT %s", (limit,))
        return [(row["path"], row["error"]) for row in rows]

    # -- texts ---------------------------------------------------------------------
    def set_ocr(self, meme_id: int, text: str, engine: str) -> None:
        text = clean_text(text)
        with self.write() as conn:
            row = conn.execute("SELECT sha256 FROM memes WHERE id = %s", (meme_id,)).fetchone()
            # Duplicates (same bytes) share the result: one OCR run per content.
            targets = ([r["id"] for r in conn.execute("SELECT id FROM memes WHERE sha256 = %s", (row["sha256"],))]
                       if row and row["sha256"] else [meme_id])
            for target in targets:
                conn.execute("UPDATE memes SET ocr_text = %s, ocr_engine = %s, updated_at = %s WHERE id = %s",
                             (text, engine, time.time(), target))
                _set_stage(conn, target, "ocr", "done")
                postgres_text.reindex(conn, target)

    def set_user_description(self, meme_id: int, text: str) -> None:
        text = clean_text(text)
        with self.write() as conn:
            _require_meme(conn, meme_id)
            conn.execute("UPDATE memes SET user_description = %s, updated_at = %s WHERE id = %s", (text, time.time(), meme_id))
            postgres_text.reindex(conn, meme_id)

    def set_description(self, meme_id: int, description: Description) -> None:
        with self.write() as conn:
            _require_meme(conn, meme_id)
            conn.execute(
                "INSERT INTO descriptions (meme_id, model_id, text, backend, dtype, revision, ms, created_at) "
                "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (meme_id, model_id) DO UPDATE SET "
                "text = excluded.text, backend = excluded.backend, dtype = excluded.dtype, "
                "revision = excluded.revision, ms = excluded.ms, created_at = excluded.created_at",
                (meme_id, description.model_id, clean_text(description.text), description.backend, description.dtype,
                 description.revision, description.ms, description.created_at or time.time()),
            )
            _set_stage(conn, meme_id, "caption", "done")
            postgres_text.reindex(conn, meme_id)

    # -- tags ----------------------------------------------------------------------
    def create_tag(self, name: str) -> None:
        name = _clean_tag(name)
        with self.write() as conn:
            conn.execute("INSERT INTO tags (name) VALUES (%s) ON CONFLICT DO NOTHING", (name,))

    def add_tags(self, meme_id: int, names: Iterable[str]) -> None:
        with self.write() as conn:
            _require_meme(conn, meme_id)
            for name in map(_clean_tag, names):
                conn.execute("INSERT INTO tags (name) VALUES (%s) ON CONFLICT DO NOTHING", (name,))
                conn.execute("INSERT INTO meme_tags (meme_id, tag_id) SELECT %s, id FROM tags WHERE lower(name) = lower(%s) "
                             "ON CONFLICT DO NOTHING", (meme_id, name))
            postgres_text.reindex(conn, meme_id)

    def remove_tags(self, meme_id: int, names: Iterable[str]) -> None:
        with self.write() as conn:
            _require_meme(conn, meme_id)
            for name in names:
                conn.execute("DELETE FROM meme_tags WHERE meme_id = %s AND tag_id = "
                             "(SELECT id FROM tags WHERE lower(name) = lower(%s))", (meme_id, name.strip()))
            postgres_text.reindex(conn, meme_id)

    def list_tags(self) -> list[tuple[str, int]]:
        rows = self.query("SELECT t.name, COUNT(mt.meme_id) AS n FROM tags t LEFT JOIN meme_tags mt ON mt.tag_id = t.id "
                          "GROUP BY t.id ORDER BY lower(t.name)")
        return [(row["name"], row["n"]) for row in rows]

    # -- stages --------------------------------------------------------------------
    def pending(self, stage: str) -> list[int]:
        """Present, readable memes whose ``stage`` is not done (never started, queued or failed)."""
        rows = self.query("SELECT m.id FROM memes m LEFT JOIN stages s ON s.meme_id = m.id AND s.stage = %s "
                          "WHERE m.status = 'ok' AND (s.status IS NULL OR s.status != 'done') ORDER BY m.id", (stage,))
        return [row["id"] for row in rows]

    def ids_without_description(self, model_id: str) -> list[int]:
        rows = self.query("SELECT m.id FROM memes m WHERE m.status = 'ok' AND NOT EXISTS "
                          "(SELECT 1 FROM descriptions d WHERE d.meme_id = m.id AND d.model_id = %s) ORDER BY m.id", (model_id,))
        return [row["id"] for row in rows]

    def mark_stage(self, meme_id: int, stage: str, status: str, error: str | None = None) -> None:
        with self.write() as conn:
            _set_stage(conn, meme_id, stage, status, error)

    def mark_stage_many(self, meme_ids: list[int], stage: str, status: str) -> None:
        with self.write() as conn:
            for meme_id in meme_ids:
                _set_stage(conn, meme_id, stage, status)

    def stage_counts(self, stage: str) -> dict[str, int]:
        rows = self.query("SELECT status, COUNT(*) AS n FROM stages WHERE stage = %s GROUP BY status", (stage,))
        return {row["status"]: row["n"] for row in rows}

    # -- search --------------------------------------------------------------------
    def keyword_search(self, words: list[str], phrases: list[str], limit: int) -> list[int]:
        with self._lock:
            return postgres_text.search(self._live(), words, phrases, limit)

    def filter_ids(self, filters: Filters) -> set[int]:
        with self._lock:
            return postgres_text.filter_ids(self._live(), filters)

    # -- import / export -----------------------------------------------------------
    def memes_at_paths(self, paths: list[str]) -> dict[str, int]:
        """path -> meme id for those of ``paths`` that are memes (any status)."""
        unique = list(dict.fromkeys(paths))
        if not unique:
            return {}
        return {row["path"]: row["id"] for row in self.query("SELECT path, id FROM memes WHERE path = ANY(%s)", (unique,))}

    def pending_records(self) -> list[tuple[int, dict]]:
        """(row id, record) of every import record still waiting for its file, oldest first."""
        return [(row["id"], json.loads(row["payload"])) for row in self.query("SELECT id, payload FROM pending_imports ORDER BY id")]

    def apply_import(self, applied: list[tuple[int, dict]], resolved: list[int], waiting: list[dict]) -> None:
        """One import, in one transaction (see SqliteStore.apply_import)."""
        with self.write() as conn:
            for meme_id, record in applied:
                postgres_text.apply_payload(conn, meme_id, record)
            if resolved:
                conn.execute("DELETE FROM pending_imports WHERE id = ANY(%s)", (resolved,))
            if waiting:
                conn.cursor().executemany(
                    "INSERT INTO pending_imports (path, folder_name, relative, sha256, payload) VALUES (%s, %s, %s, %s, %s)",
                    [(*pending_columns(r), json.dumps(r)) for r in waiting],
                )

    def _claim_pending_import(self, conn, meme_id: int, record: FileRecord) -> None:
        """Hook of insert_file: a waiting import record of this file is applied to its new meme."""
        folder_paths = [row["path"] for row in conn.execute("SELECT path FROM folders")]
        relatives = [relative for _, relative in relative_keys(record.path, folder_paths)]
        rows = conn.execute(
            "SELECT id, path, folder_name, relative, sha256, payload FROM pending_imports "
            "WHERE path = %s OR sha256 = %s OR relative = ANY(%s::text[]) ORDER BY id", (record.path, record.sha256, relatives),
        ).fetchall()
        if not rows:
            return
        same_bytes = conn.execute("SELECT COUNT(*) AS n FROM memes WHERE sha256 = %s", (record.sha256,)).fetchone()["n"]
        chosen = pending_for_new_meme(record.path, record.sha256, folder_paths, same_bytes, rows)
        if chosen is not None:
            postgres_text.apply_payload(conn, meme_id, json.loads(chosen["payload"]), fresh=True)
            conn.execute("DELETE FROM pending_imports WHERE id = %s", (chosen["id"],))


# -- module helpers -----------------------------------------------------------------
def _rows_under(conn, root: str) -> list[dict]:
    prefix = roots.path_prefix(root)
    return conn.execute(
        "SELECT id, path, folder_id, size, mtime, status, sha256, error FROM memes "
        "WHERE path = %s OR left(path, %s) = %s", (root, len(prefix), prefix)).fetchall()


def _folder(row: dict) -> Folder:
    return Folder(id=row["id"], path=row["path"], added_at=row["added_at"], auto_scan_minutes=row["auto_scan_minutes"],
                  last_scan_at=row["last_scan_at"],
                  last_scan=json.loads(row["last_scan_json"]) if row["last_scan_json"] else None)


def _require_meme(conn, meme_id: int) -> None:
    if not _INT64_MIN <= meme_id <= _INT64_MAX or \
            conn.execute("SELECT 1 FROM memes WHERE id = %s", (meme_id,)).fetchone() is None:
        raise NotFoundError(f"no meme with id {meme_id}")


def _set_stage(conn, meme_id: int, stage: str, status: str, error: str | None = None) -> None:
    conn.execute(
        "INSERT INTO stages (meme_id, stage, status, attempts, error, updated_at) VALUES (%s, %s, %s, %s, %s, %s) "
        "ON CONFLICT (meme_id, stage) DO UPDATE SET status = excluded.status, error = excluded.error, "
        "attempts = stages.attempts + excluded.attempts, updated_at = excluded.updated_at",
        (meme_id, stage, status, 1 if status == "failed" else 0, error, time.time()),
    )
