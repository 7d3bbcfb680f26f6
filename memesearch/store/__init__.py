"""Storage: the Store contract and its implementations (SQLite default, Postgres scale-out)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from memesearch.config import Settings
from memesearch.errors import ConfigError

if TYPE_CHECKING:
    from memesearch.store.base import Store


def open_store(settings: Settings) -> Store:
    """The store selected by settings: SQLite in the data dir unless a database URL says otherwise."""
    url = settings.database_url
    if not url or url.startswith("sqlite:///"):
        from memesearch.store.sqlite import SqliteStore

        path = url.removeprefix("sqlite:///") if url else settings.database_path
        return SqliteStore(path)
    if url.startswith(("postgresql://", "postgres://")):
        # Imported here so SQLite users never need psycopg; PostgresStore raises a
        # MissingDependencyError naming the [postgres] extra when it is absent.
        from memesearch.store.postgres import PostgresStore

        return PostgresStore(url)
    raise ConfigError(f"unsupported database URL {url!r}", hint="use sqlite:///PATH or postgresql://...")
