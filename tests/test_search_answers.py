"""Search says what it found: file-name words, totals, nothing for nonsense, advice on no results
(real SQLite, real MiniLM, the real CLI); and the migration that indexes existing file names."""

from __future__ import annotations

import json
import sqlite3

import pytest
from PIL import Image
from typer.testing import CliRunner

from memesearch.cli import app
from memesearch.search.suggest import suggestions
from memesearch.store.schema_sqlite import MIGRATIONS
from memesearch.text import filename_words

runner = CliRunner()
NAMES = ["drake-hotline-bling.png", "DistractedBoyfriend2.png", "IMG_0042.png", "this_is_fine.jpg"]


@pytest.fixture(scope="module")
def library(tmp_path_factory, shared_models_dir):
    """Four memes without text (OCR off): only their file names can find them by keyword."""
    root = tmp_path_factory.mktemp("names")
    folder = root / "memes"
    folder.mkdir()
    for index, name in enumerate(NAMES):
        Image.new("RGB", (64 + index, 48), (40 * index, 90, 160)).save(folder / name)
    home = root / "data"
    home.mkdir()
    (home / "models").symlink_to(shared_models_dir, target_is_directory=True)
    env = {"MEMESEARCH_OCR_ENABLED": "false", "MEMESEARCH_THREADS": "1"}
    assert runner.invoke(app, ["--data-dir", str(home), "add", str(folder)], env=env).exit_code == 0
    indexed = runner.invoke(app, ["--data-dir", str(home), "index", "--json"], env=env)
    assert indexed.exit_code == 0, indexed.output
    return home, env


def search(library, *args: str):
    home, env = library
    return runner.invoke(app, ["--data-dir", str(home), "search", *args], env=env)


def test_file_names_are_split_into_words():
    assert filename_words("/memes/drake-hotline-bling.jpg") == "drake hotline bling"
    assert filename_words("DistractedBoyfriend2.png") == "Distracted Boyfriend 2"
    assert filename_words("HTMLParserMeme.webp") == "HTML Parser Meme"
    assert filename_words("IMG_20230101.PNG") == "IMG 20230101"
    assert filename_words("C:\\memes\\KätzchenWütend.png") == "Kätzchen Wütend"


@pytest.mark.parametrize(("query", "expected"), [
    ("drake", "drake-hotline-bling.png"), ("boyfriend", "DistractedBoyfriend2.png"),
    ("fine", "this_is_fine.jpg"), ("0042", "IMG_0042.png"),
])
def test_keyword_search_finds_file_names(library, query, expected):
    result = search(library, query, "--mode", "keyword", "--json")
    body = json.loads(result.output)
    assert [hit["path"].rsplit("/", 1)[-1] for hit in body["hits"]] == [expected]
    assert body["total"] == 1 and body["total_is_exact"] is True


def test_json_has_the_total_beyond_the_page(library):
    body = json.loads(search(library, "", "--json", "--limit", "2").output)
    assert len(body["hits"]) == 2 and body["total"] == len(NAMES) and body["total_is_exact"] is True


@pytest.mark.parametrize("mode", ["hybrid", "vector", "keyword"])
def test_nonsense_finds_nothing(library, mode):
    body = json.loads(search(library, "xyzzyqwv", "--mode", mode, "--json").output)
    assert body["hits"] == [] and body["total"] == 0


def test_no_results_in_the_terminal_suggest_what_to_try(library):
    result = search(library, "xyzzyqwv plugh", "--mode", "keyword")
    assert result.exit_code == 0
    assert "no memes match 'xyzzyqwv plugh' in keyword mode" in result.output
    assert "--mode hybrid" in result.output and "--mode vector" in result.output


def test_suggestions_keep_filters_and_quote_phrases():
    tips = suggestions('"first try" printer jam tag:work', "keyword")
    assert [t.mode for t in tips][:1] == ["hybrid"]
    fewer = next(t for t in tips if t.label.startswith("Use fewer words"))
    assert "tag:work" in fewer.query and len(fewer.query.split()) < 5
    assert any(t.query == '"first try" printer jam' or t.label.startswith("Search without filters") for t in tips)
    assert suggestions("", "hybrid") == []


def test_migration_indexes_the_file_names_of_an_existing_library(tmp_path):
    """A database from before file names were indexed (schema 2) finds them after opening."""
    from memesearch.store.sqlite import SqliteStore, _split_sql

    path = tmp_path / "old.db"
    conn = sqlite3.connect(path)
    for version, script in enumerate(MIGRATIONS[:2]):
        for statement in _split_sql(script):
            conn.execute(statement)
        conn.execute(f"PRAGMA user_version = {version + 1}")
    conn.execute("INSERT INTO memes (id, path, added_at, updated_at, ocr_text) VALUES (1, '/m/drake-no.png', 0, 0, 'hello')")
    conn.execute("INSERT INTO meme_fts (rowid, user_text, description, ocr_text, tags) VALUES (1, '', '', 'hello', '')")
    conn.commit()
    conn.close()
    store = SqliteStore(path)
    try:
        assert store.schema_version == len(MIGRATIONS)
        assert store.keyword_search(["drake"], [], 10) == [1]
        assert store.keyword_search(["hello"], [], 10) == [1]  # the old text is still found
        queued = store.query("SELECT COUNT(*) AS n FROM stages WHERE stage = 'embed'")[0]["n"]
        assert queued == 0  # the rebuild queued no re-embedding
    finally:
        store.close()
