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
