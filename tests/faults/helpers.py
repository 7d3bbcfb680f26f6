"""Invariants checked after every injected fault: integrity, nothing lost, nothing duplicated."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from memesearch.app import Core
from memesearch.config import Settings


def assert_library_consistent(database: Path, expected_memes: int, caption_model: str | None = None) -> None:
    """SQLite, checked with raw SQL so no store code can hide a problem."""
    conn = sqlite3.connect(database)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert conn.execute("PRAGMA foreign_key_check").fetchall() == []
        memes = conn.execute("SELECT COUNT(*), COUNT(DISTINCT path), COUNT(DISTINCT sha256) FROM memes "
                             "WHERE status = 'ok'").fetchone()
        assert memes == (expected_memes, expected_memes, expected_memes), memes
        assert conn.execute("SELECT COUNT(*) FROM memes WHERE status = 'ok' AND ocr_engine IS NULL").fetchone()[0] == 0
        vectors = conn.execute("SELECT COUNT(*), COUNT(DISTINCT meme_id || '/' || model_id) FROM vectors").fetchone()
        assert vectors == (expected_memes, expected_memes), f"one vector per meme, got {vectors}"
        if caption_model:
            rows = conn.execute("SELECT meme_id, COUNT(*) FROM descriptions WHERE model_id = ? GROUP BY meme_id",
                                (caption_model,)).fetchall()
            assert len(rows) == expected_memes and all(count == 1 for _, count in rows), rows
        duplicated_tags = conn.execute("SELECT meme_id, tag_id, COUNT(*) FROM meme_tags GROUP BY meme_id, tag_id "
                                       "HAVING COUNT(*) > 1").fetchall()
        assert duplicated_tags == []
    finally:
        conn.close()


def assert_store_consistent(settings: Settings, expected_memes: int, caption_model: str | None = None) -> None:
    """Any store (SQLite or PostgreSQL), through its own API; SQLite also gets the raw checks."""
    core = Core(settings)
    try:
        store = core.store
        assert store.integrity_ok()
        memes = store.get_memes(store.meme_ids())
        assert len(memes) == expected_memes
        assert len({m.path for m in memes}) == len({m.sha256 for m in memes}) == expected_memes
        assert all(m.ocr_engine for m in memes), "every meme kept its OCR text"
        assert store.counts()["vectors"] == expected_memes, store.counts()
        for meme in memes:
            if caption_model:
                assert [d.model_id for d in meme.descriptions].count(caption_model) == 1, meme.id
            assert len(set(meme.tags)) == len(meme.tags)
    finally:
        core.close()
    if not settings.database_url:
        assert_library_consistent(settings.database_path, expected_memes, caption_model)
