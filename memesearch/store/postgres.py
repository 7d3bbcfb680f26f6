"""The scale-out store: PostgreSQL with pgvector (HNSW) and pg_trgm, same contract as SqliteStore.

One connection per store object, serialised by a lock (like the SQLite store);
several processes and machines each open their own. Writes go through
``write()``, one transaction each. This module owns the connection and the
migrations; the statements are ``sql_store.SqlStore``'s, shared with SQLite,
and what is PostgreSQL's own (tsvector + pg_trgm search, pgvector) is
``dialects.postgres``. Vector search runs in the database (``vector_search``),
so nothing loads millions of vectors into memory. psycopg is imported here
only; ``open_store`` imports this module lazily so SQLite users never need it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager

from memesearch.errors import ConfigError, SchemaTooNewError, require
from memesearch.store.dialects.postgres import POSTGRES
from memesearch.store.postgres_vectors import VectorMethods
from memesearch.store.schema_postgres import MIGRATIONS, SCHEMA_VERSION
from memesearch.store.sql_store import SqlStore

_MIGRATION_LOCK = 7_316_001  # advisory lock id: one migrator at a time across processes


class PostgresStore(VectorMethods, SqlStore):
    kind = "postgres"
    dialect = POSTGRES

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
                self._rebuild_search_if_asked(conn)
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

    @contextmanager
    def _reading(self) -> Iterator:
        with self._lock:
            yield self._live()

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
