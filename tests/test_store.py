"""Runs the Store contract against every store (see the ``store`` fixture's params)."""

from __future__ import annotations

import sqlite3

import pytest

from memesearch.errors import SchemaTooNewError
from memesearch.store.schema_sqlite import SCHEMA_VERSION
from memesearch.store.sqlite import SqliteStore
from tests.store_contract import StoreContract


class TestStoreContract(StoreContract):
    pass


def test_sqlite_schema_is_versioned(tmp_path):
    store = SqliteStore(tmp_path / "x.db")
    assert store.schema_version == SCHEMA_VERSION
    assert store.query("PRAGMA journal_mode")[0][0] == "wal"
    store.close()


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "x.db"
    SqliteStore(path).close()
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaTooNewError, match="upgrade|understands"):
        SqliteStore(path)


def test_both_stores_share_one_set_of_statements(tmp_path):
    """Every contract method but connection handling comes from SqlStore, for both databases:
    a statement written twice (a twin of a SqlStore method in one store) fails here."""
    from memesearch.store.base import Store
    from memesearch.store.postgres import PostgresStore

    store = SqliteStore(tmp_path / "x.db")
    assert isinstance(store, Store)
    store.close()
    contract = {name for name in dir(Store) if not name.startswith("_")}
    connection_handling = {"kind", "schema_version", "write", "query", "close", "integrity_ok"}
    for cls in (SqliteStore, PostgresStore):
        assert {name for name in contract if name in vars(cls)} <= connection_handling, cls
