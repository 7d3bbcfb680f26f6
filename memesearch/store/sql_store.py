"""The store's statements, written once for SQLite and PostgreSQL.

``SqlStore`` implements the ``Store`` contract (``store/base.py``) over any DB-API
connection whose rows can be read by column name. Statements use ``?`` placeholders
and SQL both databases accept; what differs lives in ``self.dialect``
(``store/dialects``): placeholders and list parameters, the path-prefix test,
full-text search, vector encoding. A subclass per database owns the connections:
``write()`` (one transaction), ``_reading()`` (a connection to read with),
``query()``, ``close()``, migrations (``sqlite.py``, ``postgres.py``).

Every statement that changes a meme's text or tags refreshes its search row in the
same transaction (``sql_text.reindex``).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable
from contextlib import AbstractContextManager

import numpy as np

from memesearch.errors import InvalidInputError, NotFoundError
from memesearch.store import roots, sql_text
from memesearch.store.care import LibraryCareMixin
from memesearch.store.dialects import Dialect
from memesearch.store.models import Description, FileRecord, Filters, Folder, Meme
from memesearch.store.sql_runs import RunsMixin
from memesearch.store.transfer import pending_columns, pending_for_new_meme, relative_keys
from memesearch.text import clean_tag as _clean_tag, clean_text

_MEME_COLUMNS = (
    "id, path, folder_id, sha256, phash, size, mtime, width, height, format, frames, status, "
    "error, duplicate_of, ocr_text, ocr_engine, user_description, added_at, updated_at"
)
_FILE_FIELDS = ("folder_id", "size", "mtime", "sha256", "phash", "width", "height", "format", "frames", "status", "error")
_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class SqlStore(RunsMixin, LibraryCareMixin):
    kind: str
    dialect: Dialect

    # -- supplied by each database's store ------------------------------------------------
    def write(self) -> AbstractContextManager: raise NotImplementedError
    def _reading(self) -> AbstractContextManager: raise NotImplementedError
    def query(self, sql: str, params: Iterable = ()) -> list: raise NotImplementedError

    # -- statements ------------------------------------------------------------------------
    def _sql(self, statement: str) -> str:
        return self.dialect.sql(statement)

    def _exec(self, conn, statement: str, params: Iterable | None = None):
        """Run one ``?`` statement on ``conn`` (inside ``write()`` or ``_reading()``); its cursor."""
        if params is None:
            return conn.execute(self.dialect.sql(statement))
        return conn.execute(self.dialect.sql(statement), tuple(params))

    def _query(self, statement: str, params: Iterable = ()) -> list:
        return self.query(self.dialect.sql(statement), params)

    # LibraryCareMixin hooks.
    def _reindex_meme(self, conn, meme_id: int, *, queue_embed: bool = True) -> None:
        sql_text.reindex(self.dialect, conn, meme_id, queue_embed=queue_embed)

    def _unindex_meme(self, conn, meme_id: int) -> None:
        self.dialect.remove_text(conn, meme_id)

    def _bump_vectors(self, conn) -> None:
        """Tell in-memory caches (and the search engine) that the set of searchable vectors changed."""
        conn.execute("UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE key = 'vectors_version'")

    def _rebuild_search_if_asked(self, conn) -> None:
        """A migration that recreated the text index sets 'search_rebuild' in meta: it is refilled
        in the migration's own transaction, so no reader ever sees an empty index."""
        row = conn.execute("SELECT value FROM meta WHERE key = 'search_rebuild'").fetchone()
        if row is not None and row["value"] == "1":
            sql_text.rebuild_all(self.dialect, conn)
            conn.execute("DELETE FROM meta WHERE key = 'search_rebuild'")

    # -- folders ------------------------------------------------------------------
    def add_folder(self, path: str) -> Folder:
        """Idempotent. Known memes under ``path`` (an outer root's, or a removed folder's) now belong
        to it; a removed folder's memes become present again when the next scan sees their files."""
        with self.write() as conn:
            self._exec(conn, "INSERT INTO folders (path, added_at) VALUES (?, ?) ON CONFLICT (path) DO NOTHING",
                       (path, time.time()))
            folders = [_folder(row) for row in conn.execute("SELECT * FROM folders").fetchall()]
            added = next(folder for folder in folders if folder.path == path)
            claimed = roots.reassignments(self._rows_under(conn, path), folders).get(added.id, [])
            if claimed:
                self._set_folder(conn, claimed, added.id)
        return self.folder_by_path(path)  # type: ignore[return-value]

    def folder_by_path(self, path: str) -> Folder | None:
        rows = self._query("SELECT * FROM folders WHERE path = ?", (path,))
        return _folder(rows[0]) if rows else None

    def list_folders(self) -> list[Folder]:
        return [_folder(row) for row in self.query("SELECT * FROM folders ORDER BY path")]

    def remove_folder(self, folder_id: int) -> None:
        """Forget a root. Its memes go to the next outer root that reaches them; the others leave the
        library (status 'missing', no folder) with their texts and tags, until a root reaches them again."""
        with self.write() as conn:
            rows = self._exec(conn, "SELECT id, path FROM memes WHERE folder_id = ?", (folder_id,)).fetchall()
            self._exec(conn, "DELETE FROM folders WHERE id = ?", (folder_id,))
            remaining = [_folder(row) for row in conn.execute("SELECT * FROM folders").fetchall()]
            for target, ids in roots.reassignments(rows, remaining).items():
                if target is None:
                    self._exec(conn, f"UPDATE memes SET status = 'missing', folder_id = NULL, updated_at = ? "
                                     f"WHERE {self.dialect.in_list('id')}", (time.time(), self.dialect.list_param(ids)))
                else:
                    self._set_folder(conn, ids, target)
            self._bump_vectors(conn)

    def set_folder_auto_scan(self, folder_id: int, minutes: int) -> None:
        """How often a folder is rescanned automatically (0 = never)."""
        if minutes < 0:
            raise InvalidInputError("the auto-scan interval cannot be negative")
        with self.write() as conn:
            if self._exec(conn, "UPDATE folders SET auto_scan_minutes = ? WHERE id = ?", (minutes, folder_id)).rowcount == 0:
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

    def phashes_signature(self) -> tuple:
        """Changes whenever ``phashes()`` may have (cheap: no hash is read), so a copy kept between
        searches knows when to reload: every write of a file's hash or status stamps updated_at."""
        row = self.query("SELECT COUNT(*) AS n, SUM(id) AS total, MAX(updated_at) AS stamp FROM memes "
                         "WHERE status = 'ok' AND phash IS NOT NULL")[0]
        return (int(row["n"]), int(row["total"] or 0), float(row["stamp"] or 0.0))

    def record_scan(self, folder_id: int, summary: dict) -> None:
        with self.write() as conn:
            self._exec(conn, "UPDATE folders SET last_scan_at = ?, last_scan_json = ? WHERE id = ?",
                       (time.time(), json.dumps(summary), folder_id))

    # -- memes: files -------------------------------------------------------------
    def files_under(self, root: str) -> dict:
        """Every meme at or under ``root`` whatever its folder or status (see ``base.Store``)."""
        with self._reading() as conn:
            return {row["path"]: row for row in self._rows_under(conn, root)}

    def _rows_under(self, conn, root: str) -> list:
        condition, params = self.dialect.under_root(root, roots.path_prefix(root))
        return self._exec(conn, f"SELECT id, path, folder_id, size, mtime, status, sha256, error FROM memes "
                                f"WHERE {condition}", params).fetchall()

    def set_folder(self, meme_ids: Iterable[int], folder_id: int) -> None:
        with self.write() as conn:
            self._set_folder(conn, list(meme_ids), folder_id)

    def _set_folder(self, conn, meme_ids: list[int], folder_id: int) -> None:
        self._exec(conn, f"UPDATE memes SET folder_id = ? WHERE {self.dialect.in_list('id')}",
                   (folder_id, self.dialect.list_param(meme_ids)))

    def files_in_folder(self, folder_id: int) -> dict:
        rows = self._query("SELECT id, path, size, mtime, status, sha256 FROM memes WHERE folder_id = ?", (folder_id,))
        return {row["path"]: row for row in rows}

    def memes_with_sha(self, sha256: str) -> list:
        return self._query("SELECT id, path, status FROM memes WHERE sha256 = ? ORDER BY id", (sha256,))

    def insert_file(self, record: FileRecord) -> int:
        now = time.time()
        with self.write() as conn:
            original = self._exec(
                conn, "SELECT id, ocr_text, ocr_engine FROM memes WHERE sha256 = ? AND status = 'ok' "
                      "AND duplicate_of IS NULL ORDER BY id LIMIT 1", (record.sha256,),
            ).fetchone() if record.sha256 else None
            meme_id = self._exec(
                conn,
                f"INSERT INTO memes (path, {', '.join(_FILE_FIELDS)}, duplicate_of, ocr_text, ocr_engine, added_at, "
                f"updated_at) VALUES (?, {', '.join('?' * len(_FILE_FIELDS))}, ?, ?, ?, ?, ?) RETURNING id",
                (record.path, *(getattr(record, f) for f in _FILE_FIELDS),
                 original["id"] if original else None, original["ocr_text"] if original else "",
                 original["ocr_engine"] if original else None, now, now),
            ).fetchall()[0]["id"]
            if original and original["ocr_engine"]:
                # Same bytes as a meme we already read: share its OCR instead of recomputing.
                self._set_stage(conn, meme_id, "ocr", "done")
            self._claim_pending_import(conn, meme_id, record)
            self._reindex_meme(conn, meme_id)
            return meme_id

    def update_file(self, meme_id: int, record: FileRecord, *, content_changed: bool) -> None:
        """Refresh what the scanner saw. Changed content drops machine-made text, keeps the user's."""
        with self.write() as conn:
            before = self._exec(conn, "SELECT path FROM memes WHERE id = ?", (meme_id,)).fetchone()
            assignments = ", ".join(f"{f} = ?" for f in _FILE_FIELDS)
            self._exec(conn, f"UPDATE memes SET path = ?, {assignments}, updated_at = ? WHERE id = ?",
                       (record.path, *(getattr(record, f) for f in _FILE_FIELDS), time.time(), meme_id))
            self._bump_vectors(conn)  # status may have changed
            if content_changed:
                self._exec(conn, "UPDATE memes SET ocr_text = '', ocr_engine = NULL, duplicate_of = NULL WHERE id = ?",
                           (meme_id,))
                self._exec(conn, "DELETE FROM descriptions WHERE meme_id = ?", (meme_id,))
                self._exec(conn, "DELETE FROM stages WHERE meme_id = ?", (meme_id,))
                self._reindex_meme(conn, meme_id)
            elif before is not None and before["path"] != record.path:
                self._reindex_meme(conn, meme_id, queue_embed=False)  # moved or renamed: new file-name words

    def set_status(self, meme_ids: Iterable[int], status: str) -> None:
        ids = list(meme_ids)
        with self.write() as conn:
            self._exec(conn, f"UPDATE memes SET status = ?, updated_at = ? WHERE {self.dialect.in_list('id')}",
                       (status, time.time(), self.dialect.list_param(ids)))
            self._bump_vectors(conn)  # the in-memory vector matrix holds present memes only

    def missing_files(self) -> list:
        return self.query("SELECT id, path, folder_id FROM memes WHERE status = 'missing' ORDER BY id")

    def delete_memes(self, meme_ids: Iterable[int]) -> int:
        """Forget memes with their texts, tags and vectors (``prune``, for files that are gone)."""
        ids = self.dialect.list_param(i for i in meme_ids if _INT64_MIN <= i <= _INT64_MAX)
        with self.write() as conn:
            found = [row["id"] for row in self._exec(conn, f"SELECT id FROM memes WHERE {self.dialect.in_list('id')}",
                                                      (ids,)).fetchall()]
            for meme_id in found:
                self._unindex_meme(conn, meme_id)
            if found:
                self._exec(conn, f"DELETE FROM memes WHERE {self.dialect.in_list('id')}", (ids,))
                self._bump_vectors(conn)
        return len(found)

    # -- memes: reading -----------------------------------------------------------
    def get_meme(self, meme_id: int) -> Meme:
        memes = self.get_memes([meme_id])
        if not memes:
            raise NotFoundError(f"no meme with id {meme_id}")
        return memes[0]

    def get_memes(self, meme_ids: list[int]) -> list[Meme]:
        """Memes in the order of ``meme_ids`` (unknown ids are skipped)."""
        # An id the database cannot represent (a URL like /memes/99999999999999999999) is simply unknown.
        meme_ids = [i for i in meme_ids if _INT64_MIN <= i <= _INT64_MAX]
        if not meme_ids:
            return []
        ids = (self.dialect.list_param(meme_ids),)
        found = {row["id"]: Meme(**dict(row)) for row in
                 self._query(f"SELECT {_MEME_COLUMNS} FROM memes WHERE {self.dialect.in_list('id')}", ids)}
        for row in self._query("SELECT mt.meme_id, t.name FROM meme_tags mt JOIN tags t ON t.id = mt.tag_id "
                               f"WHERE {self.dialect.in_list('mt.meme_id')} ORDER BY t.name", ids):
            found[row["meme_id"]].tags.append(row["name"])
        for row in self._query(f"SELECT * FROM descriptions WHERE {self.dialect.in_list('meme_id')} "
                               "ORDER BY created_at", ids):
            data = dict(row)
            found[data.pop("meme_id")].descriptions.append(Description(**data))
        return [found[i] for i in meme_ids if i in found]

    def meme_ids(self, *, status: str | None = "ok") -> list[int]:
        if status is None:
            return [row["id"] for row in self.query("SELECT id FROM memes ORDER BY id")]
        return [row["id"] for row in self._query("SELECT id FROM memes WHERE status = ? ORDER BY id", (status,))]

    def counts(self) -> dict[str, int]:
        row = self.query(
            "SELECT COUNT(*) AS total, COUNT(*) FILTER (WHERE status = 'ok') AS ok, "
            "COUNT(*) FILTER (WHERE status = 'missing') AS missing, COUNT(*) FILTER (WHERE status = 'error') AS errors, "
            "COUNT(duplicate_of) AS duplicates, COUNT(ocr_engine) AS ocr_done, "
            "(SELECT COUNT(DISTINCT meme_id) FROM descriptions) AS described, "
            "(SELECT COUNT(*) FROM vectors) AS vectors, (SELECT COUNT(*) FROM folders) AS folders, "
            "(SELECT COUNT(*) FROM tags) AS tags FROM memes"
        )[0]
        return {key: int(value or 0) for key, value in dict(row).items()}

    def errors(self, limit: int = 100) -> list[tuple[str, str]]:
        rows = self._query("SELECT path, error FROM memes WHERE status = 'error' ORDER BY path LIMIT ?", (limit,))
        return [(row["path"], row["error"]) for row in rows]

    # -- texts ---------------------------------------------------------------------
    def set_ocr(self, meme_id: int, text: str, engine: str) -> None:
        text = clean_text(text)
        with self.write() as conn:
            row = self._exec(conn, "SELECT sha256 FROM memes WHERE id = ?", (meme_id,)).fetchone()
            # Duplicates (same bytes) share the result: one OCR run per content.
            targets = ([r["id"] for r in self._exec(conn, "SELECT id FROM memes WHERE sha256 = ?", (row["sha256"],))]
                       if row and row["sha256"] else [meme_id])
            for target in targets:
                self._exec(conn, "UPDATE memes SET ocr_text = ?, ocr_engine = ?, updated_at = ? WHERE id = ?",
                           (text, engine, time.time(), target))
                self._set_stage(conn, target, "ocr", "done")
                self._reindex_meme(conn, target)

    def set_user_description(self, meme_id: int, text: str) -> None:
        text = clean_text(text)
        with self.write() as conn:
            self._require_meme(conn, meme_id)
            self._exec(conn, "UPDATE memes SET user_description = ?, updated_at = ? WHERE id = ?",
                       (text, time.time(), meme_id))
            self._reindex_meme(conn, meme_id)

    def set_description(self, meme_id: int, description: Description) -> None:
        with self.write() as conn:
            self._require_meme(conn, meme_id)
            self._exec(
                conn,
                "INSERT INTO descriptions (meme_id, model_id, text, backend, dtype, revision, ms, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (meme_id, model_id) DO UPDATE SET "
                "text = excluded.text, backend = excluded.backend, dtype = excluded.dtype, "
                "revision = excluded.revision, ms = excluded.ms, created_at = excluded.created_at",
                (meme_id, description.model_id, clean_text(description.text), description.backend, description.dtype,
                 description.revision, description.ms, description.created_at or time.time()),
            )
            self._set_stage(conn, meme_id, "caption", "done")
            self._reindex_meme(conn, meme_id)

    # -- tags (names are unique case-insensitively: lower(name), both schemas' rule) -----------
    def create_tag(self, name: str) -> None:
        name = _clean_tag(name)
        with self.write() as conn:
            self._exec(conn, "INSERT INTO tags (name) VALUES (?) ON CONFLICT DO NOTHING", (name,))

    def add_tags(self, meme_id: int, names: Iterable[str]) -> None:
        with self.write() as conn:
            self._require_meme(conn, meme_id)
            for name in map(_clean_tag, names):
                self._exec(conn, "INSERT INTO tags (name) VALUES (?) ON CONFLICT DO NOTHING", (name,))
                self._exec(conn, "INSERT INTO meme_tags (meme_id, tag_id) SELECT ?, id FROM tags "
                                 "WHERE lower(name) = lower(?) ON CONFLICT DO NOTHING", (meme_id, name))
            self._reindex_meme(conn, meme_id)

    def remove_tags(self, meme_id: int, names: Iterable[str]) -> None:
        with self.write() as conn:
            self._require_meme(conn, meme_id)
            for name in names:
                self._exec(conn, "DELETE FROM meme_tags WHERE meme_id = ? AND tag_id = "
                                 "(SELECT id FROM tags WHERE lower(name) = lower(?))", (meme_id, name.strip()))
            self._reindex_meme(conn, meme_id)

    def list_tags(self) -> list[tuple[str, int]]:
        rows = self.query("SELECT t.name, COUNT(mt.meme_id) AS n FROM tags t LEFT JOIN meme_tags mt ON mt.tag_id = t.id "
                          "GROUP BY t.id, t.name ORDER BY lower(t.name)")
        return [(row["name"], row["n"]) for row in rows]

    # -- vectors (always per model id; the dialect encodes them) ---------------------------------
    def vector_hashes(self, model_id: str) -> dict[int, str]:
        rows = self._query("SELECT meme_id, text_hash FROM vectors WHERE model_id = ?", (model_id,))
        return {row["meme_id"]: row["text_hash"] for row in rows}

    def vector_hash(self, meme_id: int, model_id: str, *, stage: str = "embed") -> str | None:
        """The hash of one meme's stored vector, if its ``stage`` is done (else None)."""
        rows = self._query(
            "SELECT v.text_hash FROM vectors v JOIN stages s ON s.meme_id = v.meme_id AND s.stage = ? "
            "WHERE v.meme_id = ? AND v.model_id = ? AND s.status = 'done'", (stage, meme_id, model_id),
        )
        return rows[0]["text_hash"] if rows else None

    def put_vectors(self, model_id: str, items: list[tuple[int, str, np.ndarray]], *, stage: str = "embed") -> None:
        """``stage``: the stage these vectors finish (image vectors finish "image_embed", not "embed")."""
        if not items:
            return
        dialect = self.dialect
        with self.write() as conn:
            conn.cursor().executemany(
                dialect.sql(f"INSERT INTO vectors (meme_id, model_id, text_hash, dim, vector) "
                            f"VALUES (?, ?, ?, ?, {dialect.vector_mark}) "
                            "ON CONFLICT (meme_id, model_id) DO UPDATE SET text_hash = excluded.text_hash, "
                            "dim = excluded.dim, vector = excluded.vector"),
                [(i, model_id, h, int(v.shape[0]), dialect.vector_param(v)) for i, h, v in items],
            )
            self._exec(conn, f"INSERT INTO stages (meme_id, stage, status, updated_at) SELECT value, ?, 'done', ? "
                             f"FROM {dialect.list_table()} WHERE TRUE ON CONFLICT (meme_id, stage) DO UPDATE SET "
                             "status = 'done', error = NULL, updated_at = excluded.updated_at",
                       (stage, time.time(), dialect.list_param(i for i, _, _ in items)))
            dialect.vectors_written(conn, model_id, {int(v.shape[0]) for _, _, v in items})
            self._bump_vectors(conn)

    def ids_needing_vectors(self, model_id: str) -> list[int]:
        """Present memes with no vector from ``model_id`` or whose text changed since (embed stage queued)."""
        rows = self._query(
            "SELECT m.id FROM memes m LEFT JOIN vectors v ON v.meme_id = m.id AND v.model_id = ? "
            "LEFT JOIN stages s ON s.meme_id = m.id AND s.stage = 'embed' "
            "WHERE m.status = 'ok' AND (v.meme_id IS NULL OR s.status IS NULL OR s.status != 'done') ORDER BY m.id",
            (model_id,),
        )
        return [row["id"] for row in rows]

    def vectors_version(self) -> int:
        return int(self.query("SELECT value FROM meta WHERE key = 'vectors_version'")[0]["value"])

    def load_vectors(self, model_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids, matrix) of every vector of ``model_id`` for memes that are present."""
        rows = self._query(
            f"SELECT v.meme_id, v.dim, {self.dialect.vector_column} AS data FROM vectors v JOIN memes m ON m.id = v.meme_id "
            "WHERE v.model_id = ? AND m.status = 'ok' ORDER BY v.meme_id", (model_id,),
        )
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        ids = np.fromiter((row["meme_id"] for row in rows), dtype=np.int64, count=len(rows))
        return ids, self.dialect.decode_vectors(rows)

    # -- stages --------------------------------------------------------------------
    def pending(self, stage: str) -> list[int]:
        """Present, readable memes whose ``stage`` is not done (never started, queued or failed)."""
        rows = self._query("SELECT m.id FROM memes m LEFT JOIN stages s ON s.meme_id = m.id AND s.stage = ? "
                           "WHERE m.status = 'ok' AND (s.status IS NULL OR s.status != 'done') ORDER BY m.id", (stage,))
        return [row["id"] for row in rows]

    def ids_without_description(self, model_id: str) -> list[int]:
        rows = self._query("SELECT m.id FROM memes m WHERE m.status = 'ok' AND NOT EXISTS "
                           "(SELECT 1 FROM descriptions d WHERE d.meme_id = m.id AND d.model_id = ?) ORDER BY m.id",
                           (model_id,))
        return [row["id"] for row in rows]

    def mark_stage(self, meme_id: int, stage: str, status: str, error: str | None = None) -> None:
        with self.write() as conn:
            self._set_stage(conn, meme_id, stage, status, error)

    def mark_stage_many(self, meme_ids: list[int], stage: str, status: str) -> None:
        with self.write() as conn:
            for meme_id in meme_ids:
                self._set_stage(conn, meme_id, stage, status)

    def stage_counts(self, stage: str) -> dict[str, int]:
        rows = self._query("SELECT status, COUNT(*) AS n FROM stages WHERE stage = ? GROUP BY status", (stage,))
        return {row["status"]: row["n"] for row in rows}

    def _set_stage(self, conn, meme_id: int, stage: str, status: str, error: str | None = None) -> None:
        self._exec(
            conn,
            "INSERT INTO stages (meme_id, stage, status, attempts, error, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
            "ON CONFLICT (meme_id, stage) DO UPDATE SET status = excluded.status, error = excluded.error, "
            "attempts = stages.attempts + excluded.attempts, updated_at = excluded.updated_at",
            (meme_id, stage, status, 1 if status == "failed" else 0, error, time.time()),
        )

    def _require_meme(self, conn, meme_id: int) -> None:
        if not _INT64_MIN <= meme_id <= _INT64_MAX or \
                self._exec(conn, "SELECT 1 FROM memes WHERE id = ?", (meme_id,)).fetchone() is None:
            raise NotFoundError(f"no meme with id {meme_id}")

    # -- search --------------------------------------------------------------------
    def keyword_search(self, words: list[str], phrases: list[str], limit: int) -> list[int]:
        with self._reading() as conn:
            return self.dialect.keyword_search(conn, words, phrases, limit)

    def filter_ids(self, filters: Filters) -> set[int]:
        """Ids of memes passing ``filters`` (present memes only unless include_missing)."""
        with self._reading() as conn:
            return sql_text.filter_ids(self.dialect, conn, filters)

    # -- import / export -----------------------------------------------------------
    def memes_at_paths(self, paths: list[str]) -> dict[str, int]:
        """path -> meme id for those of ``paths`` that are memes (any status)."""
        unique = list(dict.fromkeys(paths))
        if not unique:
            return {}
        rows = self._query(f"SELECT path, id FROM memes WHERE {self.dialect.in_list('path', 'text')}",
                           (self.dialect.list_param(unique),))
        return {row["path"]: row["id"] for row in rows}

    def pending_records(self) -> list[tuple[int, dict]]:
        """(row id, record) of every import record still waiting for its file, oldest first."""
        return [(row["id"], json.loads(row["payload"])) for row in self.query("SELECT id, payload FROM pending_imports ORDER BY id")]

    def apply_import(self, applied: list[tuple[int, dict]], resolved: list[int], waiting: list[dict]) -> None:
        """One import, in one transaction: merge records into their memes (never overwriting),
        drop the pending rows that found their meme, keep ``waiting`` records for files to come."""
        with self.write() as conn:
            for meme_id, record in applied:
                sql_text.apply_payload(self.dialect, conn, meme_id, record)
            if resolved:
                self._exec(conn, f"DELETE FROM pending_imports WHERE {self.dialect.in_list('id')}",
                           (self.dialect.list_param(resolved),))
            if waiting:
                conn.cursor().executemany(
                    self._sql("INSERT INTO pending_imports (path, folder_name, relative, sha256, payload) VALUES (?, ?, ?, ?, ?)"),
                    [(*pending_columns(r), json.dumps(r)) for r in waiting],
                )

    def _claim_pending_import(self, conn, meme_id: int, record: FileRecord) -> None:
        """Hook of insert_file: a waiting import record of this file is applied to its new meme."""
        folder_paths = [row["path"] for row in conn.execute("SELECT path FROM folders")]
        relatives = [relative for _, relative in relative_keys(record.path, folder_paths)]
        rows = [dict(row) for row in self._exec(
            conn,
            "SELECT id, path, folder_name, relative, sha256, payload FROM pending_imports "
            f"WHERE path = ? OR sha256 = ? OR {self.dialect.in_list('relative', 'text')} ORDER BY id",
            (record.path, record.sha256, self.dialect.list_param(relatives)),
        ).fetchall()]
        if not rows:
            return
        same_bytes = self._exec(conn, "SELECT COUNT(*) AS n FROM memes WHERE sha256 = ?", (record.sha256,)).fetchone()["n"]
        chosen = pending_for_new_meme(record.path, record.sha256, folder_paths, same_bytes, rows)
        if chosen is not None:
            sql_text.apply_payload(self.dialect, conn, meme_id, json.loads(chosen["payload"]), fresh=True)
            self._exec(conn, "DELETE FROM pending_imports WHERE id = ?", (chosen["id"],))


def _folder(row) -> Folder:
    return Folder(id=row["id"], path=row["path"], added_at=row["added_at"], auto_scan_minutes=row["auto_scan_minutes"],
                  last_scan_at=row["last_scan_at"],
                  last_scan=json.loads(row["last_scan_json"]) if row["last_scan_json"] else None)
