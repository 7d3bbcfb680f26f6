"""Ids beyond SQLite's 64-bit integers (found by schemathesis: GET /api/memes/99999999999999999999
was a 500 OverflowError) are unknown ids, not crashes."""

from __future__ import annotations

import pytest

from memesearch.errors import NotFoundError
from memesearch.store.sqlite import SqliteStore

HUGE = [2**63, 10**20, -(2**63) - 1]


@pytest.fixture
def sqlite_store(tmp_path):
    store = SqliteStore(tmp_path / "store.db")
    yield store
    store.close()


@pytest.mark.parametrize("meme_id", HUGE)
def test_huge_meme_ids_are_not_found(sqlite_store, meme_id):
    assert sqlite_store.get_memes([meme_id, 1]) == []
    with pytest.raises(NotFoundError):
        sqlite_store.get_meme(meme_id)
    with pytest.raises(NotFoundError):
        sqlite_store.set_user_description(meme_id, "x")
    with pytest.raises(NotFoundError):
        sqlite_store.add_tags(meme_id, ["x"])


@pytest.mark.parametrize("run_id", HUGE)
def test_huge_run_ids_are_not_found(sqlite_store, run_id):
    assert sqlite_store.get_run_row(run_id) is None
