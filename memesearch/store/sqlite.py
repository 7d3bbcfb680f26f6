"""The embedded default store: one SQLite file, WAL mode, one writer at a time.

Writes go through ``write()`` which holds a process-wide lock and opens a
transaction on the one writer connection. Reads use a connection per thread, so
concurrent searches in the web server run side by side instead of queueing behind
one lock (WAL mode lets readers proceed while a write is in progress); a read made
inside the thread's own write transaction uses the writer so it sees its changes. Text indexes (FTS5 words + trigram substrings) are refreshed by
``_reindex`` whenever a meme's text or tags change, in the same transaction.
"""

from __future__ import annotations

import atexit
import json
import sqlite3
import weakref
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

import numpy as np

from memesearch.errors import DiskFullError, InvalidInputError, NotFoundError, SchemaTooNewError
from memesearch.readonly import database_read_only, read_only_error
from memesearch.store import roots, sqlite_text
from memesearch.store.care import LibraryCareMixin
from memesearch.store.models import Description, FileRecord, Filters, Folder, Meme
from memesearch.store.schema_sqlite import MIGRATIONS, SCHEMA_VERSION
from memesearch.store.transfer import pending_columns, pending_for_new_meme, relative_keys
from memesearch.text import clean_tag as _clean_tag, clean_text
from memesearch.store.sqlite_runs import SqliteRunsMixin

_MEME_COLUMNS = (
    "id, path, folder_id, sha256, phash, size, mtime, width, height, format, frames, status, "
    "error, duplicate_of, ocr_text, ocr_engine, user_description, added_at, updated_at"
)
_FILE_FIELDS = ("folder_id", "size", "mtime", "sha256", "phash", "width", "height", "format", "frames", "status", "error")


# Stores still open when the interpreter exits are closed then (checkpointing the WAL), so a
# CLI command that never calls close() still leaves a self-contained database file.
_OPEN_STORES: weakref.WeakSet = weakref.WeakSet()


@atexit.register
def _close_open_stores() -> None:
    for store in list(_OPEN_STORES):
        # A thread stuck inside a write must not hang the exit: skip a store whose lock is held.
        if store._lock.acquire(timeout=2):
            try:
                store.close()
            except sqlite3.Error:
                pass
            finally:
                store._lock.release()


class SqliteStore(SqliteRunsMixin, LibraryCareMixin):
    kind = "sqlite"

    # LibraryCareMixin hooks.
    def _reindex_meme(self, conn, meme_id: int) -> None:
        sqlite_text.reindex(conn, meme_id)

    def _unindex_meme(self, conn, meme_id: int) -> None:
        sqlite_text.remove(conn, meme_id)

    def _bump_vectors(self, conn) -> None:
        _bump_vectors_version(conn)

    def __init__(self, path: Path | str, *, read_only: bool | None = None) -> None:
        self.path = Path(path)
        # A read-only data dir serves every read; write() refuses with one sentence.
        self.read_only = database_read_only(self.path) if read_only is None else read_only
        self._uri: str | None = None
        if self.read_only:
            self._uri = self._read_only_uri()
        else:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._conn = self._connect(check_same_thread=False)
        if not self.read_only:
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            # A bounded WAL: SQLite's default lets it grow to 1000 pages (4 MB) between
            # checkpoints, and an index run now writes template features (about 18 KB a
            # meme), so a nearly full disk ran out of room in the WAL alone. 256 pages (1 MB),
            # and the file shrinks back after each checkpoint.
            self._conn.execute("PRAGMA wal_autocheckpoint=256")
            self._conn.execute("PRAGMA journal_size_limit=1048576")
        self._conn.execute("PRAGMA foreign_keys=ON")
        self._writer_thread: int | None = None
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._closed = False
        self._migrate()
        _OPEN_STORES.add(self)

    def _read_only_uri(self) -> str:
        """How to open the database without writing a byte into its folder.

        With no WAL content (a clean shutdown checkpoints it), ``immutable=1`` reads the database
        file alone and creates no -shm file. Leftover WAL content needs ``mode=ro``, which reads
        the WAL (SQLite may then need to create the -shm index, which only succeeds where allowed).
        """
        if not self.path.is_file():
            raise read_only_error(self.path.parent, f"create a library in it (there is no {self.path.name} yet)")
        base = f"file:{quote(str(self.path.absolute()))}?mode=ro"
        wal = self.path.with_name(self.path.name + "-wal")
        has_wal = wal.is_file() and wal.stat().st_size > 0
        candidates = (base, base + "&immutable=1") if has_wal else (base + "&immutable=1", base)
        for uri in candidates:
            try:
                probe = sqlite3.connect(uri, uri=True)
                try:
                    probe.execute("SELECT count(*) FROM sqlite_master").fetchone()
                    return uri
                finally:
                    probe.close()
            except sqlite3.OperationalError:
                continue
        raise read_only_error(self.path.parent, f"open {self.path.name} (SQLite cannot read it without writing)")

    def _connect(self, check_same_thread: bool) -> sqlite3.Connection:
        target, uri = (self._uri, True) if self._uri else (self.path, False)
        conn = sqlite3.connect(target, timeout=30, check_same_thread=check_same_thread, isolation_level=None, uri=uri)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    # -- plumbing -----------------------------------------------------------------
    def _migrate(self) -> None:
        current = self._conn.execute("PRAGMA user_version").fetchone()[0]
        if current > SCHEMA_VERSION:
            raise SchemaTooNewError(
                f"the database {self.path} has schema version {current}, but this memesearch "
                f"understands up to version {SCHEMA_VERSION}",
                hint="upgrade memesearch (pip install -U memesearch) or point --data-dir elsewhere",
            )
        if current < SCHEMA_VERSION and self.read_only:
            raise read_only_error(self.path.parent, f"upgrade {self.path.name} to schema version {SCHEMA_VERSION} "
                                                     f"(it has version {current})")
        for version in range(current, SCHEMA_VERSION):
            with self.write() as conn:
                for statement in _split_sql(MIGRATIONS[version]):
                    conn.execute(statement)
                _rebuild_search_if_asked(conn)
                conn.execute(f"PRAGMA user_version = {version + 1}")

    @property
    def schema_version(self) -> int:
        return self._conn.execute("PRAGMA user_version").fetchone()[0]

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction; commits on success, rolls back on any error (Ctrl-C included)."""
        if self.read_only:
            raise read_only_error(self.path.parent)
        with self._lock:
            outer_writer, self._writer_thread = self._writer_thread, threading.get_ident()
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self._conn
                    self._conn.execute("COMMIT")
                except BaseException:
                    # SQLite may have rolled back already (e.g. on a full disk): only end an open transaction.
                    if self._conn.in_transaction:
                        self._conn.execute("ROLLBACK")
                    raise
            except sqlite3.OperationalError as exc:
                if getattr(exc, "sqlite_errorcode", None) == sqlite3.SQLITE_FULL:
                    raise DiskFullError(
                        f"the disk holding {self.path} is full; the last change was rolled back",
                        hint="free some space and run the command again: everything saved before is intact",
                    ) from exc
                raise
            finally:
                self._writer_thread = outer_writer

    @contextmanager
    def _reading(self) -> Iterator[sqlite3.Connection]:
        """The connection this thread reads with: its own, or the writer inside its write()."""
        if self._writer_thread == threading.get_ident():
            with self._lock:
                yield self._conn
            return
        reader = getattr(self._local, "conn", None)
        if reader is None:
            with self._lock:
                if self._closed:
                    raise sqlite3.ProgrammingError("Cannot operate on a closed database.")
                # Only this thread uses it; closing it from close() must be allowed.
                reader = self._local.conn = self._connect(check_same_thread=False)
                self._readers.append(reader)
        yield reader

    def query(self, sql: str, params: Iterable = ()) -> list[sqlite3.Row]:
        with self._reading() as conn:
            return conn.execute(sql, tuple(params)).fetchall()

    def close(self) -> None:
        """Close every connection; the writer first folds the WAL into the database file, so a
        copy of ``memesearch.db`` alone (without ``-wal``) holds every change."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            _OPEN_STORES.discard(self)
            for reader in self._readers:
                reader.close()
            self._readers.clear()
            if not self.read_only:
                try:
                    # Wait briefly, not the full busy timeout, for another process's reader to finish.
                    self._conn.execute("PRAGMA busy_timeout=2000")
                    self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
                except sqlite3.Error:  # busy with another process's reader: SQLite checkpoints later
                    pass
            self._conn.close()

    def backup_to(self, target: Path) -> None:
        """A consistent copy of the database at ``target`` (SQLite's online backup: other
        connections keep reading and writing meanwhile)."""
        destination = sqlite3.connect(target)
        try:
            with self._reading() as source:
                # One step: the copy is one read snapshot, however busy the writer is.
                source.backup(destination)
        finally:
            destination.close()

    def integrity_ok(self) -> bool:
        return self.query("PRAGMA integrity_check")[0][0] == "ok"

    # -- folders ------------------------------------------------------------------
    def add_folder(self, path: str) -> Folder:
        """Idempotent. Known memes under ``path`` (an outer root's, or a removed folder's) now belong
        to it; a removed folder's memes become present again when the next scan sees their files."""
        with self.write() as conn:
            conn.execute("INSERT OR IGNORE INTO folders (path, added_at) VALUES (?, ?)", (path, time.time()))
            folders = [_folder(row) for row in conn.execute("SELECT * FROM folders")]
            added = next(folder for folder in folders if folder.path == path)
            claimed = roots.reassignments(_rows_under(conn, path), folders).get(added.id, [])
            for chunk in _chunks(claimed, 500):
                conn.execute(f"UPDATE memes SET folder_id = ? WHERE id IN ({','.join('?' * len(chunk))})",
                             (added.id, *chunk))
        return self.folder_by_path(path)  # type: ignore[return-value]

    def folder_by_path(self, path: str) -> Folder | None:
        rows = self.query("SELECT * FROM folders WHERE path = ?", (path,))
        return _folder(rows[0]) if rows else None

    def list_folders(self) -> list[Folder]:
        return [_folder(row) for row in self.query("SELECT * FROM folders ORDER BY path")]

    def remove_folder(self, folder_id: int) -> None:
        """Forget a root. Its memes go to the next outer root that reaches them; the others leave the
        library (status 'missing', no folder) with their texts and tags, until a root reaches them again."""
        with self.write() as conn:
            rows = conn.execute("SELECT id, path FROM memes WHERE folder_id = ?", (folder_id,)).fetchall()
            conn.execute("DELETE FROM folders WHERE id = ?", (folder_id,))
            remaining = [_folder(row) for row in conn.execute("SELECT * FROM folders")]
            for target, ids in roots.reassignments(rows, remaining).items():
                for chunk in _chunks(ids, 500):
                    marks = ",".join("?" * len(chunk))
                    if target is None:
                        conn.execute(f"UPDATE memes SET status = 'missing', folder_id = NULL, updated_at = ? "
                                     f"WHERE id IN ({marks})", (time.time(), *chunk))
                    else:
                        conn.execute(f"UPDATE memes SET folder_id = ? WHERE id IN ({marks})", (target, *chunk))
            _bump_vectors_version(conn)

    def set_folder_auto_scan(self, folder_id: int, minutes: int) -> None:
        """How often a folder is rescanned automatically (0 = never)."""
        if minutes < 0:
            raise InvalidInputError("the auto-scan interval cannot be negative")
        with self.write() as conn:
            if conn.execute("UPDATE folders SET auto_scan_minutes = ? WHERE id = ?", (minutes, folder_id)).rowcount == 0:
                raise NotFoundError(f"no folder with id {folder_id}")

    def folder_meme_counts(self) -> dict[int, int]:
        """Present memes per folder id."""
        rows = self.query("SELECT folder_id, COUNT(*) FROM memes WHERE status = 'ok' AND folder_id IS NOT NULL GROUP BY folder_id")
        return {row[0]: row[1] for row in rows}

    def phashes(self) -> list[tuple[int, str]]:
        """(id, perceptual hash) of every present meme, for near-duplicate lookups."""
        return [(row[0], row[1]) for row in self.query("SELECT id, phash FROM memes WHERE status = 'ok' AND phash IS NOT NULL")]

    def record_scan(self, folder_id: int, summary: dict) -> None:
        with self.write() as conn:
            conn.execute(
                "UPDATE folders SET last_scan_at = ?, last_scan_json = ? WHERE id = ?",
                (time.time(), json.dumps(summary), folder_id),
            )

    # -- memes: files -------------------------------------------------------------
    def files_under(self, root: str) -> dict[str, sqlite3.Row]:
        """Every meme at or under ``root`` whatever its folder or status (see ``base.Store``)."""
        with self._reading() as conn:
            return {row["path"]: row for row in _rows_under(conn, root)}

    def set_folder(self, meme_ids: Iterable[int], folder_id: int) -> None:
        with self.write() as conn:
            ids = list(meme_ids)
            for chunk in _chunks(ids, 500):
                conn.execute(f"UPDATE memes SET folder_id = ? WHERE id IN ({','.join('?' * len(chunk))})",
                             (folder_id, *chunk))

    def files_in_folder(self, folder_id: int) -> dict[str, sqlite3.Row]:
        rows = self.query("SELECT id, path, size, mtime, status, sha256 FROM memes WHERE folder_id = ?", (folder_id,))
        return {row["path"]: row for row in rows}

    def memes_with_sha(self, sha256: str) -> list[sqlite3.Row]:
        return self.query("SELECT id, path, status FROM memes WHERE sha256 = ? ORDER BY id", (sha256,))

    def insert_file(self, record: FileRecord) -> int:
        now = time.time()
        with self.write() as conn:
            original = conn.execute(
                "SELECT id, ocr_text, ocr_engine FROM memes WHERE sha256 = ? AND status = 'ok' "
                "AND duplicate_of IS NULL ORDER BY id LIMIT 1",
                (record.sha256,),
            ).fetchone() if record.sha256 else None
            cursor = conn.execute(
                f"INSERT INTO memes (path, {', '.join(_FILE_FIELDS)}, duplicate_of, ocr_text, ocr_engine, added_at, updated_at) "
                f"VALUES (?, {', '.join('?' * len(_FILE_FIELDS))}, ?, ?, ?, ?, ?)",
                (record.path, *(getattr(record, f) for f in _FILE_FIELDS),
                 original["id"] if original else None,
                 original["ocr_text"] if original else "", original["ocr_engine"] if original else None, now, now),
            )
            meme_id = cursor.lastrowid
            if original and original["ocr_engine"]:
                # Same bytes as a meme we already read: share its OCR instead of recomputing.
                _set_stage(conn, meme_id, "ocr", "done")
            self._claim_pending_import(conn, meme_id, record)
            sqlite_text.reindex(conn, meme_id)
            return meme_id

    def update_file(self, meme_id: int, record: FileRecord, *, content_changed: bool) -> None:
        """Refresh what the scanner saw. Changed content drops machine-made text, keeps the user's."""
        with self.write() as conn:
            before = conn.execute("SELECT path FROM memes WHERE id = ?", (meme_id,)).fetchone()
            assignments = ", ".join(f"{f} = ?" for f in _FILE_FIELDS)
            conn.execute(
                f"UPDATE memes SET path = ?, {assignments}, updated_at = ? WHERE id = ?",
                (record.path, *(getattr(record, f) for f in _FILE_FIELDS), time.time(), meme_id),
            )
            _bump_vectors_version(conn)  # status may have changed
            if content_changed:
                conn.execute("UPDATE memes SET ocr_text = '', ocr_engine = NULL, duplicate_of = NULL WHERE id = ?", (meme_id,))
                conn.execute("DELETE FROM descriptions WHERE meme_id = ?", (meme_id,))
                conn.execute("DELETE FROM stages WHERE meme_id = ?", (meme_id,))
                sqlite_text.reindex(conn, meme_id)
            elif before is not None and before[0] != record.path:
                sqlite_text.reindex(conn, meme_id, queue_embed=False)  # moved or renamed: new file-name words

    def set_status(self, meme_ids: Iterable[int], status: str) -> None:
        ids = list(meme_ids)
        with self.write() as conn:
            conn.executemany("UPDATE memes SET status = ?, updated_at = ? WHERE id = ?", [(status, time.time(), i) for i in ids])
            _bump_vectors_version(conn)  # the in-memory vector matrix holds present memes only

    def missing_files(self) -> list[sqlite3.Row]:
        return self.query("SELECT id, path, folder_id FROM memes WHERE status = 'missing' ORDER BY id")

    def delete_memes(self, meme_ids: Iterable[int]) -> int:
        """Forget memes with their texts, tags and vectors (``prune``, for files that are gone)."""
        with self.write() as conn:
            ids = [i for i in meme_ids if conn.execute("SELECT 1 FROM memes WHERE id = ?", (i,)).fetchone()]
            for meme_id in ids:
                sqlite_text.remove(conn, meme_id)
            conn.executemany("DELETE FROM memes WHERE id = ?", [(i,) for i in ids])
            if ids:
                _bump_vectors_version(conn)
        return len(ids)

    # -- memes: reading -----------------------------------------------------------
    def get_meme(self, meme_id: int) -> Meme:
        memes = self.get_memes([meme_id])
        if not memes:
            raise NotFoundError(f"no meme with id {meme_id}")
        return memes[0]

    def get_memes(self, meme_ids: list[int]) -> list[Meme]:
        """Memes in the order of ``meme_ids`` (unknown ids are skipped)."""
        # An id SQLite cannot even represent (a URL like /memes/99999999999999999999) is simply unknown.
        meme_ids = [i for i in meme_ids if _INT64_MIN <= i <= _INT64_MAX]
        if not meme_ids:
            return []
        found: dict[int, Meme] = {}
        for chunk in _chunks(meme_ids, 500):
            marks = ",".join("?" * len(chunk))
            for row in self.query(f"SELECT {_MEME_COLUMNS} FROM memes WHERE id IN ({marks})", chunk):
                found[row["id"]] = Meme(**dict(row))
            for row in self.query(
                f"SELECT mt.meme_id, t.name FROM meme_tags mt JOIN tags t ON t.id = mt.tag_id "
                f"WHERE mt.meme_id IN ({marks}) ORDER BY t.name", chunk
            ):
                found[row["meme_id"]].tags.append(row["name"])
            for row in self.query(
                f"SELECT * FROM descriptions WHERE meme_id IN ({marks}) ORDER BY created_at", chunk
            ):
                data = dict(row)
                found[data.pop("meme_id")].descriptions.append(Description(**data))
        return [found[i] for i in meme_ids if i in found]

    def meme_ids(self, *, status: str | None = "ok") -> list[int]:
        if status is None:
            return [row[0] for row in self.query("SELECT id FROM memes ORDER BY id")]
        return [row[0] for row in self.query("SELECT id FROM memes WHERE status = ? ORDER BY id", (status,))]

    def counts(self) -> dict[str, int]:
        row = self.query(
            "SELECT COUNT(*) AS total, "
            "SUM(status = 'ok') AS ok, SUM(status = 'missing') AS missing, SUM(status = 'error') AS errors, "
            "SUM(duplicate_of IS NOT NULL) AS duplicates, SUM(ocr_engine IS NOT NULL) AS ocr_done, "
            "(SELECT COUNT(DISTINCT meme_id) FROM descriptions) AS described, "
            "(SELECT COUNT(*) FROM vectors) AS vectors, (SELECT COUNT(*) FROM folders) AS folders, "
            "(SELECT COUNT(*) FROM tags) AS tags FROM memes"
        )[0]
        return {key: int(row[key] or 0) for key in row.keys()}

    def errors(self, limit: int = 100) -> list[tuple[str, str]]:
        rows = self.query("SELECT path, error FROM memes WHERE status = 'error' ORDER BY path LIMIT ?", (limit,))
        return [(row["path"], row["error"]) for row in rows]

    # -- texts ---------------------------------------------------------------------
    def set_ocr(self, meme_id: int, text: str, engine: str) -> None:
        text = clean_text(text)
        with self.write() as conn:
            sha = conn.execute("SELECT sha256 FROM memes WHERE id = ?", (meme_id,)).fetchone()
            # Duplicates (same bytes) share the result: one OCR run per content.
            targets = [r[0] for r in conn.execute("SELECT id FROM memes WHERE sha256 = ?", (sha[0],))] if sha and sha[0] else [meme_id]
            for target in targets:
                conn.execute("UPDATE memes SET ocr_text = ?, ocr_engine = ?, updated_at = ? WHERE id = ?", (text, engine, time.time(), target))
                _set_stage(conn, target, "ocr", "done")
                sqlite_text.reindex(conn, target)

    def set_user_description(self, meme_id: int, text: str) -> None:
        text = clean_text(text)
        with self.write() as conn:
            _require_meme(conn, meme_id)
            conn.execute("UPDATE memes SET user_description = ?, updated_at = ? WHERE id = ?", (text, time.time(), meme_id))
            sqlite_text.reindex(conn, meme_id)

    def set_description(self, meme_id: int, description: Description) -> None:
        with self.write() as conn:
            _require_meme(conn, meme_id)
            conn.execute(
                "INSERT INTO descriptions (meme_id, model_id, text, backend, dtype, revision, ms, created_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (meme_id, model_id) DO UPDATE SET "
                "text = excluded.text, backend = excluded.backend, dtype = excluded.dtype, "
                "revision = excluded.revision, ms = excluded.ms, created_at = excluded.created_at",
                (meme_id, description.model_id, clean_text(description.text), description.backend, description.dtype,
                 description.revision, description.ms, description.created_at or time.time()),
            )
            _set_stage(conn, meme_id, "caption", "done")
            sqlite_text.reindex(conn, meme_id)

    # -- tags ----------------------------------------------------------------------
    def create_tag(self, name: str) -> None:
        name = _clean_tag(name)
        with self.write() as conn:
            conn.execute("INSERT OR IGNORE INTO tags (name) VALUES (?)", (name,))

    def add_tags(self, meme_id: int, names: Iterable[str]) -> None:
        with self.write() as conn:
            _require_meme(conn, meme_id)
            for name in map(_clean_tag, names):
                conn.execute("INSERT OR IGNORE INTO tags (name) VALUES (?)", (name,))
                conn.execute(
                    "INSERT OR IGNORE INTO meme_tags (meme_id, tag_id) SELECT ?, id FROM tags WHERE name = ?",
                    (meme_id, name),
                )
            sqlite_text.reindex(conn, meme_id)

    def remove_tags(self, meme_id: int, names: Iterable[str]) -> None:
        with self.write() as conn:
            _require_meme(conn, meme_id)
            for name in names:
                conn.execute(
                    "DELETE FROM meme_tags WHERE meme_id = ? AND tag_id = (SELECT id FROM tags WHERE name = ?)",
                    (meme_id, name.strip()),
                )
            sqlite_text.reindex(conn, meme_id)

    def list_tags(self) -> list[tuple[str, int]]:
        rows = self.query(
            "SELECT t.name, COUNT(mt.meme_id) AS n FROM tags t LEFT JOIN meme_tags mt ON mt.tag_id = t.id "
            "GROUP BY t.id ORDER BY t.name COLLATE NOCASE"
        )
        return [(row["name"], row["n"]) for row in rows]

    # -- vectors -------------------------------------------------------------------
    def vector_hashes(self, model_id: str) -> dict[int, str]:
        rows = self.query("SELECT meme_id, text_hash FROM vectors WHERE model_id = ?", (model_id,))
        return {row[0]: row[1] for row in rows}

    def put_vectors(self, model_id: str, items: list[tuple[int, str, np.ndarray]], *, stage: str = "embed") -> None:
        """``stage``: the stage these vectors finish (image vectors finish "image_embed", not "embed")."""
        with self.write() as conn:
            conn.executemany(
                "INSERT INTO vectors (meme_id, model_id, text_hash, dim, vector) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (meme_id, model_id) DO UPDATE SET text_hash = excluded.text_hash, "
                "dim = excluded.dim, vector = excluded.vector",
                [(i, model_id, h, int(v.shape[0]), v.astype(np.float32).tobytes()) for i, h, v in items],
            )
            for meme_id, _, _ in items:
                _set_stage(conn, meme_id, stage, "done")
            _bump_vectors_version(conn)

    def ids_needing_vectors(self, model_id: str) -> list[int]:
        """Present memes with no vector from ``model_id`` or whose text changed since (embed stage queued)."""
        rows = self.query(
            "SELECT m.id FROM memes m LEFT JOIN vectors v ON v.meme_id = m.id AND v.model_id = ? "
            "LEFT JOIN stages s ON s.meme_id = m.id AND s.stage = 'embed' "
            "WHERE m.status = 'ok' AND (v.meme_id IS NULL OR s.status IS NULL OR s.status != 'done') ORDER BY m.id",
            (model_id,),
        )
        return [row[0] for row in rows]

    def mark_stage_many(self, meme_ids: list[int], stage: str, status: str) -> None:
        with self.write() as conn:
            for meme_id in meme_ids:
                _set_stage(conn, meme_id, stage, status)

    def vectors_version(self) -> int:
        return int(self.query("SELECT value FROM meta WHERE key = 'vectors_version'")[0][0])

    def load_vectors(self, model_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids, matrix) of every vector of ``model_id`` for memes that are present."""
        rows = self.query(
            "SELECT v.meme_id, v.dim, v.vector FROM vectors v JOIN memes m ON m.id = v.meme_id "
            "WHERE v.model_id = ? AND m.status = 'ok' ORDER BY v.meme_id",
            (model_id,),
        )
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        ids = np.fromiter((row[0] for row in rows), dtype=np.int64, count=len(rows))
        matrix = np.frombuffer(b"".join(row[2] for row in rows), dtype=np.float32).reshape(len(rows), rows[0][1])
        return ids, matrix

    # -- stages --------------------------------------------------------------------
    def pending(self, stage: str) -> list[int]:
        """Present, readable memes whose ``stage`` is not done (never started, queued or failed)."""
        rows = self.query(
            "SELECT m.id FROM memes m LEFT JOIN stages s ON s.meme_id = m.id AND s.stage = ? "
            "WHERE m.status = 'ok' AND (s.status IS NULL OR s.status != 'done') ORDER BY m.id",
            (stage,),
        )
        return [row[0] for row in rows]

    def ids_without_description(self, model_id: str) -> list[int]:
        rows = self.query(
            "SELECT m.id FROM memes m WHERE m.status = 'ok' AND NOT EXISTS "
            "(SELECT 1 FROM descriptions d WHERE d.meme_id = m.id AND d.model_id = ?) ORDER BY m.id",
            (model_id,),
        )
        return [row[0] for row in rows]

    def mark_stage(self, meme_id: int, stage: str, status: str, error: str | None = None) -> None:
        with self.write() as conn:
            _set_stage(conn, meme_id, stage, status, error)

    def stage_counts(self, stage: str) -> dict[str, int]:
        rows = self.query("SELECT status, COUNT(*) FROM stages WHERE stage = ? GROUP BY status", (stage,))
        return {row[0]: row[1] for row in rows}

    # -- search --------------------------------------------------------------------
    def keyword_search(self, words: list[str], phrases: list[str], limit: int) -> list[int]:
        with self._reading() as conn:
            return sqlite_text.search(conn, words, phrases, limit)

    def filter_ids(self, filters: Filters) -> set[int]:
        """Ids of memes passing ``filters`` (present memes only unless include_missing)."""
        with self._reading() as conn:
            return sqlite_text.filter_ids(conn, filters)

    # -- import / export -----------------------------------------------------------
    def memes_at_paths(self, paths: list[str]) -> dict[str, int]:
        """path -> meme id for those of ``paths`` that are memes (any status)."""
        found: dict[str, int] = {}
        for chunk in _chunks(list(dict.fromkeys(paths)), 500):
            rows = self.query(f"SELECT path, id FROM memes WHERE path IN ({','.join('?' * len(chunk))})", chunk)
            found.update((row[0], row[1]) for row in rows)
        return found

    def pending_records(self) -> list[tuple[int, dict]]:
        """(row id, record) of every import record still waiting for its file, oldest first."""
        return [(row[0], json.loads(row[1])) for row in self.query("SELECT id, payload FROM pending_imports ORDER BY id")]

    def apply_import(self, applied: list[tuple[int, dict]], resolved: list[int], waiting: list[dict]) -> None:
        """One import, in one transaction: merge records into their memes (never overwriting),
        drop the pending rows that found their meme, keep ``waiting`` records for files to come."""
        with self.write() as conn:
            for meme_id, record in applied:
                sqlite_text.apply_payload(conn, meme_id, record)
            conn.executemany("DELETE FROM pending_imports WHERE id = ?", [(i,) for i in resolved])
            conn.executemany(
                "INSERT INTO pending_imports (path, folder_name, relative, sha256, payload) VALUES (?, ?, ?, ?, ?)",
                [(*pending_columns(r), json.dumps(r)) for r in waiting],
            )

    def _claim_pending_import(self, conn: sqlite3.Connection, meme_id: int, record: FileRecord) -> None:
        """Hook of insert_file: a waiting import record of this file is applied to its new meme."""
        folder_paths = [row[0] for row in conn.execute("SELECT path FROM folders")]
        relatives = [relative for _, relative in relative_keys(record.path, folder_paths)]
        rows = [dict(row) for row in conn.execute(
            f"SELECT id, path, folder_name, relative, sha256, payload FROM pending_imports WHERE path = ? OR sha256 = ? "
            f"OR relative IN ({','.join('?' * len(relatives))}) ORDER BY id", (record.path, record.sha256, *relatives))]
        if not rows:
            return
        same_bytes = conn.execute("SELECT COUNT(*) FROM memes WHERE sha256 = ?", (record.sha256,)).fetchone()[0]
        chosen = pending_for_new_meme(record.path, record.sha256, folder_paths, same_bytes, rows)
        if chosen is not None:
            sqlite_text.apply_payload(conn, meme_id, json.loads(chosen["payload"]), fresh=True)
            conn.execute("DELETE FROM pending_imports WHERE id = ?", (chosen["id"],))


# -- module helpers -----------------------------------------------------------------
def _rebuild_search_if_asked(conn: sqlite3.Connection) -> None:
    """A migration that recreated the text index sets 'search_rebuild' in meta: it is refilled
    in the migration's own transaction, so no reader ever sees an empty index."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'search_rebuild'").fetchone()
    if row is not None and row[0] == "1":
        sqlite_text.rebuild_all(conn)
        conn.execute("DELETE FROM meta WHERE key = 'search_rebuild'")


def _split_sql(script: str) -> list[str]:
    """Statements of a migration script (no semicolons inside our statements' bodies)."""
    return [part.strip() for part in script.split(";") if part.strip() and not _only_comments(part)]


def _only_comments(part: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in part.splitlines())


def _chunks(items: list[int], size: int) -> Iterator[list[int]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


def _rows_under(conn: sqlite3.Connection, root: str) -> list[sqlite3.Row]:
    # Paths under root/ sort (bytewise, SQLite's BINARY collation) between "root/" and "root0"
    # ('0' follows '/'), so the unique index on path finds them without a table scan.
    prefix = roots.path_prefix(root)
    return conn.execute(
        "SELECT id, path, folder_id, size, mtime, status, sha256, error FROM memes "
        "WHERE path = ? OR (path >= ? AND path < ?)", (root, prefix, prefix[:-1] + "0")).fetchall()


def _folder(row: sqlite3.Row) -> Folder:
    return Folder(
        id=row["id"], path=row["path"], added_at=row["added_at"], auto_scan_minutes=row["auto_scan_minutes"],
        last_scan_at=row["last_scan_at"], last_scan=json.loads(row["last_scan_json"]) if row["last_scan_json"] else None,
    )


_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


def _require_meme(conn: sqlite3.Connection, meme_id: int) -> None:
    if not _INT64_MIN <= meme_id <= _INT64_MAX or \
            conn.execute("SELECT 1 FROM memes WHERE id = ?", (meme_id,)).fetchone() is None:
        raise NotFoundError(f"no meme with id {meme_id}")


def _set_stage(conn: sqlite3.Connection, meme_id: int, stage: str, status: str, error: str | None = None) -> None:
    conn.execute(
        "INSERT INTO stages (meme_id, stage, status, attempts, error, updated_at) VALUES (?, ?, ?, ?, ?, ?) "
        "ON CONFLICT (meme_id, stage) DO UPDATE SET status = excluded.status, error = excluded.error, "
        "attempts = stages.attempts + excluded.attempts, updated_at = excluded.updated_at",
        (meme_id, stage, status, 1 if status == "failed" else 0, error, time.time()),
    )


def _bump_vectors_version(conn: sqlite3.Connection) -> None:
    conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'vectors_version'")
