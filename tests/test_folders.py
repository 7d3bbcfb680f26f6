"""Folders are a set of roots (CLI): remove + re-add, nested folders, the data dir inside a
folder, skipped links reported. Each test reproduces a failure seen on main."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from tests.test_cli import cli, home  # noqa: F401  (fixture)


@pytest.fixture(autouse=True)
def _no_ocr(monkeypatch):
    # Real scanner, store and MiniLM; OCR is not what these tests are about (and costs seconds).
    monkeypatch.setenv("MEMESEARCH_OCR_ENABLED", "false")


def _png(path: Path, shade: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (40, 30), (shade, 255 - shade, (shade * 7) % 256)).save(path)
    return path


def _index(home: Path) -> dict:
    return json.loads(cli(home, "index", "--json").stdout)


def _memes(home: Path) -> dict[str, dict]:
    """path -> meme (status, tags, description) of every meme the database holds."""
    from memesearch.store.sqlite import SqliteStore

    store = SqliteStore(home / "memesearch.db")
    try:
        return {m.path: {"id": m.id, "status": m.status, "tags": m.tags, "user": m.user_description,
                         "folder_id": m.folder_id} for m in store.get_memes(store.meme_ids(status=None))}
    finally:
        store.close()


def test_remove_then_add_again_keeps_tags_and_indexes(home, tmp_path):
    folder = tmp_path / "memes"
    a, b = _png(folder / "a.png", 10), _png(folder / "b.png", 90)
    cli(home, "add", str(folder))
    _index(home)
    meme_id = _memes(home)[str(a)]["id"]
    cli(home, "tag", "add", str(meme_id), "keeper")
    assert [h["id"] for h in json.loads(cli(home, "search", "--json", "tag:keeper").stdout)["hits"]] == [meme_id]
    cli(home, "remove", str(folder))
    assert json.loads(cli(home, "status", "--json").stdout)["counts"]["ok"] == 0  # hidden, not shown
    assert json.loads(cli(home, "search", "--json", "tag:keeper").stdout)["hits"] == []
    cli(home, "prune")  # the files still exist: nothing of theirs is forgotten
    assert _memes(home)[str(a)]["tags"] == ["keeper"]
    cli(home, "add", str(folder))
    summary = _index(home)
    assert summary["counts"]["ok"] == 2 and summary["counts"]["total"] == 2
    memes = _memes(home)
    assert memes[str(a)] == {**memes[str(a)], "id": meme_id, "status": "ok", "tags": ["keeper"]}
    assert memes[str(b)]["status"] == "ok"
    b.unlink()
    _index(home)
    cli(home, "prune")  # b's file is gone: only b is forgotten
    assert set(_memes(home)) == {str(a)}


@pytest.mark.parametrize("outer_first", [True, False])
def test_nested_folders_index_each_file_once(home, tmp_path, outer_first):
    outer = tmp_path / "x"
    top, deep = _png(outer / "top.png", 20), _png(outer / "sub" / "deep.png", 200)
    order = [outer, outer / "sub"] if outer_first else [outer / "sub", outer]
    cli(home, "add", *map(str, order))
    _index(home)
    summary = _index(home)  # and again: the rescan must not trip over the other root's files
    assert summary["counts"]["total"] == 2 and summary["counts"]["ok"] == 2
    folders = {f["path"]: f for f in json.loads(cli(home, "folders", "--json").stdout)}
    memes = _memes(home)
    assert len(folders) == 2 and memes[str(deep)]["status"] == memes[str(top)]["status"] == "ok"
    cli(home, "tag", "add", str(memes[str(deep)]["id"]), "deep-tag")
    cli(home, "remove", str(outer / "sub"))  # the outer folder still reaches it
    assert _index(home)["counts"]["ok"] == 2
    cli(home, "remove", str(outer))
    assert json.loads(cli(home, "status", "--json").stdout)["counts"]["ok"] == 0
    cli(home, "add", str(outer / "sub"))
    summary = _index(home)
    assert summary["counts"]["ok"] == 1 and _memes(home)[str(deep)]["tags"] == ["deep-tag"]


def test_data_dir_inside_a_folder_with_uploads(tmp_path, shared_models_dir):
    """The data dir sits inside a registered folder: its own files are never memes, uploads are."""
    from memesearch.library.uploads import save_upload
    from memesearch.web.routes.api_library import uploads_folder
    from tests.conftest import make_core

    library = tmp_path / "library"
    mine = _png(library / "mine.png", 50)
    home = library / "data"
    core = make_core(home, shared_models_dir, ocr_enabled=False)
    _png(home / "thumbs" / "1.png", 60)  # stands for any file of the app's own in the data dir
    _png(home / "secret.png", 70)
    core.store.add_folder(str(library.resolve()))
    data = _png(tmp_path / "upload.png", 80).read_bytes()
    saved = save_upload(core.settings, "cat.png", data)
    uploads_folder(core)  # what the first web upload does
    core.close()
    cli(home, "index")
    summary = _index(home)
    assert summary["counts"]["total"] == 2 and summary["counts"]["ok"] == 2
    assert set(_memes(home)) == {str(mine.resolve()), str(saved.path.resolve())}


def test_data_dir_folders_cannot_be_added(home):
    (home / "thumbnails").mkdir()
    result = cli(home, "add", str(home / "thumbnails"), ok=False)
    assert result.exit_code == 2 and "memesearch's own data" in result.output


def test_skipped_symlinks_are_reported(home, tmp_path):
    folder = tmp_path / "memes"
    _png(folder / "a.png", 10)
    outside = _png(tmp_path / "elsewhere" / "b.png", 99)
    (folder / "link.png").symlink_to(outside)
    cli(home, "add", str(folder))
    output = cli(home, "index").output
    assert "link.png" in output and "symlink points outside the folder" in output
    errors = json.loads(cli(home, "status", "--json", "--errors").stdout)["errors"]
    assert {"path": str(folder / "link.png"), "error": "symlink points outside the folder"} in errors
    assert "link.png" in cli(home, "status", "--errors").output


def test_the_data_dir_itself_as_a_folder_indexes_only_its_meme_folders(home):
    upload = _png(home / "uploads" / "up.png", 30)
    _png(home / "thumbnails" / "t.png", 40)
    _png(home / "stray.png", 50)
    cli(home, "add", str(home))
    summary = _index(home)
    assert summary["folders"][0]["folder_error"] is None
    assert set(_memes(home)) == {str(upload.resolve())}
