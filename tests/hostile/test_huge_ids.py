"""Hostile values the fuzzers found, pinned as regressions.

Ids beyond SQLite's 64-bit integers (schemathesis: GET /api/memes/99999999999999999999 was a
500 OverflowError) are unknown ids; a NUL in a keyword query (Hypothesis) matches nothing.
"""

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


@pytest.mark.parametrize("query", ["\x00", "a\x00b", '"\x00"', "tag:\x00 \x00word"])
def test_nul_characters_in_a_keyword_query_are_harmless(sqlite_store, query):
    """Found by Hypothesis (tests/fuzz): a NUL made FTS5 fail with 'unterminated string'."""
    from memesearch.search.query import parse_query

    parsed = parse_query(query)
    assert sqlite_store.keyword_search(parsed.words, parsed.phrases, 10) == []
