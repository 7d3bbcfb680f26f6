"""The CLI contract that scripts and later tooling rely on."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memesearch.cli import app
from memesearch.store.schema_sqlite import SCHEMA_VERSION

runner = CliRunner()


@pytest.fixture(scope="module")
def small_corpus(tmp_path_factory):
    from memesearch.library.samples import render_sample_memes

    folder = tmp_path_factory.mktemp("cli-memes")
    return folder, render_sample_memes(folder, count=6, seed=3)


@pytest.fixture
def home(tmp_path, shared_models_dir) -> Path:
    data = tmp_path / "home"
    data.mkdir()
    (data / "models").symlink_to(shared_models_dir, target_is_directory=True)
    return data


def cli(home: Path, *args: str, ok: bool = True):
    result = runner.invoke(app, ["--data-dir", str(home), *args], catch_exceptions=False)
    if ok:
        assert result.exit_code == 0, result.output
    return result


@pytest.fixture
def indexed_home(home, small_corpus):
    folder, samples = small_corpus
    cli(home, "add", str(folder))
    summary = json.loads(cli(home, "index", "--json").stdout)
    return home, samples, summary


def test_index_json_summary(indexed_home):
    _, samples, summary = indexed_home
    assert summary["counts"]["ok"] == len(samples)
    assert summary["folders"][0]["added"] == len(samples)
    assert summary["ocr"]["done"] == len(samples) and summary["embed"]["done"] == len(samples)


def test_second_index_is_incremental(indexed_home):
    home, samples, _ = indexed_home
    summary = json.loads(cli(home, "index", "--json").stdout)
    assert summary["folders"][0]["unchanged"] == len(samples)
    assert summary["ocr"]["done"] == 0 and summary["embed"]["done"] == 0


def test_search_json_shape(indexed_home):
    home, samples, _ = indexed_home
    words = " ".join(samples[0].text.split()[:4])
    data = json.loads(cli(home, "search", words, "--json", "--limit", "3").stdout)
    assert set(data) == {"query", "mode", "hits", "total", "total_is_exact"}
    assert data["query"] == words and data["mode"] == "hybrid" and data["total"] >= len(data["hits"])
    hit = data["hits"][0]
    assert {"id", "path", "score", "ocr_text", "description", "tags"} <= set(hit)
    assert Path(hit["path"]).is_absolute() and hit["path"] == str(samples[0].path)
    assert isinstance(hit["id"], int) and isinstance(hit["score"], float) and isinstance(hit["tags"], list)
    scores = [h["score"] for h in data["hits"]]
    assert scores == sorted(scores, reverse=True)


def test_search_modes_and_batch(indexed_home, tmp_path):
    home, samples, _ = indexed_home
    for mode in ("keyword", "vector"):
        data = json.loads(cli(home, "search", samples[1].text, "--mode", mode, "--json").stdout)
        assert data["mode"] == mode and data["hits"][0]["path"] == str(samples[1].path)
    queries = tmp_path / "queries.txt"
    queries.write_text("\n".join(s.text for s in samples[:3]) + "\n\n", encoding="utf-8")
    lines = cli(home, "search", "--batch", str(queries), "--limit", "2").stdout.strip().splitlines()
    assert len(lines) == 3
    assert [json.loads(line)["hits"][0]["path"] for line in lines] == [str(s.path) for s in samples[:3]]


def test_bad_mode_is_a_clear_error(indexed_home):
    home, *_ = indexed_home
    result = cli(home, "search", "x", "--mode", "telepathy", ok=False)
    assert result.exit_code == 2 and "unknown search mode" in result.output


def test_tags_describe_show(indexed_home):
    home, samples, _ = indexed_home
    meme_id = json.loads(cli(home, "search", samples[2].text, "--json").stdout)["hits"][0]["id"]
    cli(home, "tag", "add", str(meme_id), "reaction", "classic")
    cli(home, "tag", "remove", str(meme_id), "classic")
    assert "reaction\t1" in cli(home, "tag", "list").stdout
    cli(home, "describe", str(meme_id), "a purple giraffe filing taxes")
    shown = json.loads(cli(home, "show", str(meme_id), "--json").stdout)
    assert shown["tags"] == ["reaction"] and shown["user_description"] == "a purple giraffe filing taxes"
    found = json.loads(cli(home, "search", "giraffe taxes", "--json").stdout)
    assert found["hits"][0]["id"] == meme_id
    tagged = json.loads(cli(home, "search", "tag:reaction", "--json").stdout)
    assert [h["id"] for h in tagged["hits"]] == [meme_id]
    assert cli(home, "show", "999999", ok=False).exit_code == 2


def test_export_import_round_trip(indexed_home, tmp_path, small_corpus, shared_models_dir):
    home, samples, _ = indexed_home
    meme_id = json.loads(cli(home, "search", samples[3].text, "--json").stdout)["hits"][0]["id"]
    cli(home, "tag", "add", str(meme_id), "exported")
    cli(home, "describe", str(meme_id), "über-special description")
    export = tmp_path / "export.json"
    cli(home, "export", str(export))
    # A fresh library: import first (files unknown -> pending), then index: nothing is lost.
    other = tmp_path / "other"
    other.mkdir()
    (other / "models").symlink_to(shared_models_dir, target_is_directory=True)
    cli(other, "import", str(export))
    cli(other, "add", str(small_corpus[0]))
    cli(other, "index", "--json")
    export2 = tmp_path / "export2.json"
    cli(other, "export", str(export2))
    first, second = json.loads(export.read_text()), json.loads(export2.read_text())
    assert first["version"] == 2 and first["memes"] == second["memes"]  # the same records, keyed by path


def test_status_and_prune(indexed_home):
    home, samples, _ = indexed_home
    status = json.loads(cli(home, "status", "--json").stdout)
    assert status["counts"]["ok"] == len(samples) and status["schema_version"] == SCHEMA_VERSION


def test_add_refuses_a_missing_folder(home, tmp_path):
    result = cli(home, "add", str(tmp_path / "nope"), ok=False)
    assert result.exit_code == 2 and "does not exist" in result.output


def test_newer_schema_refused_with_message(home):
    cli(home, "status")
    conn = sqlite3.connect(home / "memesearch.db")
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 5}")
    conn.close()
    result = cli(home, "status", ok=False)
    assert result.exit_code == 2 and "understands up to version" in result.output


def test_memesearch_home_env_and_entry_point(tmp_path):
    env = {**os.environ, "MEMESEARCH_HOME": str(tmp_path / "envhome")}
    done = subprocess.run([sys.executable, "-m", "memesearch", "status", "--json"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["data_dir"] == str(tmp_path / "envhome")
    assert (tmp_path / "envhome" / "memesearch.db").exists()


def test_tag_management_commands(indexed_home):
    home, _, _ = indexed_home
    ids = [h["id"] for h in json.loads(cli(home, "search", "", "--json", "--limit", "3").stdout)["hits"]]
    cli(home, "tag", "add", str(ids[0]), "classic", "cat")
    cli(home, "tag", "add", str(ids[1]), "cats")
    assert "renamed #classic to #vintage" in cli(home, "tag", "rename", "classic", "vintage").stdout
    assert "merged #cat into #cats" in cli(home, "tag", "rename", "cat", "cats").stdout
    cli(home, "tag", "color", "cats", "teal")
    cli(home, "tag", "create", "lonely")
    listed = json.loads(cli(home, "tags", "--json").stdout)["tags"]
    assert listed == [{"name": "cats", "count": 2, "color": "teal"}, {"name": "lonely", "count": 0, "color": None},
                      {"name": "vintage", "count": 1, "color": None}]
    assert cli(home, "tags").stdout.splitlines() == ["cats\t2\tteal", "lonely\t0", "vintage\t1"]
    assert "deleted 1 unused tag: lonely" in cli(home, "tag", "clean").stdout
    assert "deleted #vintage from 1 meme" in cli(home, "tag", "delete", "vintage").stdout
    tagged = json.loads(cli(home, "search", "tag:cats", "--json").stdout)["hits"]
    assert sorted(h["id"] for h in tagged) == sorted(ids[:2])


@pytest.mark.parametrize("args, message", [
    (("tag", "add", "{id}", "x" * 51), "at most 50"),
    (("tag", "add", "{id}", "tab\there"), "control characters"),
    (("tag", "rename", "nope", "other"), "no tag named"),
    (("tag", "rename", "cats", "   "), "cannot be empty"),
    (("tag", "delete", "nope"), "no tag named"),
    (("tag", "color", "cats", "chartreuse"), "unknown tag colour"),
    (("remove-meme", "999999"), "no meme with id 999999"),
    (("restore-meme", "/nowhere/x.png"), "was removed"),
])
def test_tag_and_removal_errors_exit_2(indexed_home, args, message):
    home, _, _ = indexed_home
    meme_id = json.loads(cli(home, "search", "", "--json", "--limit", "1").stdout)["hits"][0]["id"]
    cli(home, "tag", "add", str(meme_id), "cats")
    result = cli(home, *(a.replace("{id}", str(meme_id)) for a in args), ok=False)
    assert result.exit_code == 2 and message in result.output, result.output


def test_remove_meme_keeps_files_and_restore_brings_them_back(indexed_home):
    home, samples, _ = indexed_home
    hits = json.loads(cli(home, "search", "", "--json", "--limit", "2").stdout)["hits"]
    paths = {h["id"]: h["path"] for h in hits}
    before = {p: Path(p).read_bytes() for p in paths.values()}
    report = json.loads(cli(home, "remove-meme", *map(str, paths), "--json").stdout)
    assert sorted(report["removed"]) == sorted(paths) and report["files_deleted"] == []
    assert {p: Path(p).read_bytes() for p in paths.values()} == before  # never touched
    summary = json.loads(cli(home, "index", "--json").stdout)
    assert summary["counts"]["ok"] == len(samples) - 2 and summary["folders"][0]["excluded"] == 2
    first = next(iter(paths.values()))
    assert "1 file(s) will be indexed" in cli(home, "restore-meme", first).stdout
    assert json.loads(cli(home, "index", "--json").stdout)["counts"]["ok"] == len(samples) - 1
