"""The embedded default store: one SQLite file, WAL mode, one writer at a time.

Writes go through ``write()`` which holds a process-wide lock and opens a
transaction on the one writer connection. Reads use a connection per thread, so
concurrent searches in the web server run side by side instead of queueing behind
one lock (WAL mode lets readers proceed while a write is in progress); a read made
inside the thread's own write transaction uses the writer so it sees its changes.

This module owns the connections, read-only opening, WAL settings and migrations;
the statements are ``sql_store.SqlStore``'s, shared with PostgreSQL, and what is
SQLite's own (FTS5 + trigram search, float32 vector blobs) is ``dialects.sqlite``.
"""

from __future__ import annotations

import atexit
import sqlite3
import weakref
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import quote

from memesearch.errors import DiskFullError, SchemaTooNewError
from memesearch.readonly import database_read_only, read_only_error
from memesearch.store.dialects.sqlite import SQLITE
from memesearch.store.schema_sqlite import MIGRATIONS, SCHEMA_VERSION
from memesearch.store.sql_store import SqlStore


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


class SqliteStore(SqlStore):
    kind = "sqlite"
    dialect = SQLITE

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
                self._rebuild_search_if_asked(conn)
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


# -- module helpers -----------------------------------------------------------------
def _split_sql(script: str) -> list[str]:
    """Statements of a migration script (no semicolons inside our statements' bodies)."""
    return [part.strip() for part in script.split(";") if part.strip() and not _only_comments(part)]


def _only_comments(part: str) -> bool:
    return all(not line.strip() or line.strip().startswith("--") for line in part.splitlines())
