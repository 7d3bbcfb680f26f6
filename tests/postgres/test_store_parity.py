"""Both stores agree: the same library gives the same keyword hits, and export/import works through either."""

from __future__ import annotations

import json

import pytest

from memesearch.store.models import Description, FileRecord
from memesearch.store.postgres import PostgresStore
from memesearch.store.sqlite import SqliteStore
from memesearch.store.transfer import export_library, import_library

TEXTS = [
    ("ocr", "ONE DOES NOT SIMPLY WALK INTO MORDOR"),
    ("ocr", "ONEDOESNOTSIMPLYWALKINTOMORDOR"),
    ("user", "boromir explaining mordor"),
    ("ocr", "WHEN THE CODE WORKS ON THE FIRST TRY"),
    ("caption", "a man pointing at a computer screen with code"),
    ("ocr", "Ça va? Très bien, café crème"),
    ("ocr", "日本語のミーム テキスト"),
    ("tags", "reaction cats"),
    ("ocr", "grumpy cat says no to mondays"),
    ("user", "the cat that hates mondays"),
    ("ocr", "I CAN HAS CHEEZBURGER"),
    ("caption", "a cat asking for a cheeseburger"),
]
QUERIES = [
    (["mordor"], []), (["does", "not", "simply"], []), ([], ["first try"]), (["code"], []), (["cafe", "creme"], []),
    (["ミーム"], []), (["cats"], []), (["cat", "mondays"], []), (["cheezburger"], []), (["cat"], []),
]
# Memes matching only SOME words: SQLite's BM25 also weighs how rare each word is (IDF),
# PostgreSQL's ts_rank does not, so within that last tier the order may differ (same hits).
ANY_WORD_QUERIES = [(["walk", "code"], []), (["mordor", "cheezburger", "nothing"], [])]


def fill(store) -> None:
    for n, (field, text) in enumerate(TEXTS):
        meme_id = store.insert_file(FileRecord(path=f"/m/{n}.png", folder_id=None, size=1, mtime=1.0, sha256=f"s{n}"))
        if field == "ocr":
            store.set_ocr(meme_id, text, "test-ocr")
        elif field == "user":
            store.set_user_description(meme_id, text)
        elif field == "caption":
            store.set_description(meme_id, Description(model_id="cap", text=text, created_at=1))
        else:
            store.add_tags(meme_id, text.split())


@pytest.mark.parametrize("words,phrases", QUERIES)
def test_keyword_search_agrees_with_sqlite(tmp_path, postgres_url, words, phrases):
    sqlite, postgres = SqliteStore(tmp_path / "s.db"), PostgresStore(postgres_url)
    fill(sqlite)
    fill(postgres)
    expected = sqlite.keyword_search(words, phrases, 20)
    assert expected, "the query should find something"
    assert postgres.keyword_search(words, phrases, 20) == expected
    sqlite.close()
    postgres.close()


def test_export_import_through_either_store(store, tmp_path):
    meme_id = store.insert_file(FileRecord(path="/m/a.png", folder_id=None, size=1, mtime=1.0, sha256="sa"))
    document = {"format": "memesearch-export", "version": 1, "memes": [
        {"sha256": "sa", "ocr_text": "hello there", "ocr_engine": "rapidocr", "user_description": "general kenobi",
         "descriptions": [{"model_id": "cap", "text": "a man waving"}], "tags": ["StarWars"]},
        {"sha256": "later", "tags": ["arrives later"], "user_description": "pending one"},
    ]}
    (tmp_path / "in.json").write_text(json.dumps(document), encoding="utf-8")
    assert import_library(store, tmp_path / "in.json") == {"applied": 1, "pending": 1}
    meme = store.get_meme(meme_id)
    assert (meme.ocr_text, meme.user_description, meme.tags, meme.description) == (
        "hello there", "general kenobi", ["StarWars"], "a man waving")
    assert store.keyword_search(["kenobi"], [], 5) == [meme_id]
    later = store.insert_file(FileRecord(path="/m/later.png", folder_id=None, size=1, mtime=1.0, sha256="later"))
    assert store.get_meme(later).tags == ["arrives later"]
    assert store.pending_records() == []
    assert export_library(store, tmp_path / "out.json") == 2


@pytest.mark.parametrize("words,phrases", ANY_WORD_QUERIES)
def test_any_word_tier_finds_the_same_memes(tmp_path, postgres_url, words, phrases):
    sqlite, postgres = SqliteStore(tmp_path / "s.db"), PostgresStore(postgres_url)
    fill(sqlite)
    fill(postgres)
    expected = sqlite.keyword_search(words, phrases, 20)
    assert len(expected) >= 2
    assert sorted(postgres.keyword_search(words, phrases, 20)) == sorted(expected)
    sqlite.close()
    postgres.close()
