"""Export/import through the real scanner: what people wrote is never lost or mixed up.

Regression tests for issue 11: byte-identical memes came back with the first one's
description and all three tags each; importing before indexing lost records;
memes without a content hash lost theirs. The store contract (tests/store_contract.py)
covers the matching rules on both stores; the property test is
tests/fuzz/test_export_roundtrip.py.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from PIL import Image
from typer.testing import CliRunner

from memesearch.cli import app
from memesearch.config import Settings
from memesearch.library.hashing import sha256_file
from memesearch.library.scanner import scan_folder
from memesearch.store.schema_sqlite import MIGRATIONS
from memesearch.store.sqlite import SqliteStore
from memesearch.store.transfer import export_library, import_library

runner = CliRunner()


@pytest.fixture
def folder(tmp_path) -> Path:
    """Three byte-identical memes, a different one in a subfolder, an empty and an undecodable file."""
    folder = tmp_path / "memes"
    (folder / "sub dir").mkdir(parents=True)
    for name in ("a.png", "b.png", "c.png"):
        Image.new("RGB", (32, 32), (200, 30, 30)).save(folder / name)
    Image.new("RGB", (32, 32), (10, 200, 30)).save(folder / "sub dir" / "ünïcødé 🐸.png")
    (folder / "empty.png").write_bytes(b"")
    (folder / "broken.png").write_bytes(b"not an image at all")
    return folder


WRITTEN = {
    "a.png": ("drake says no", ["drake"]),
    "b.png": ("drake says yes", ["approval"]),
    "c.png": ("the third copy", ["copy", "third"]),
    "sub dir/ünïcødé 🐸.png": ("a frog in a subfolder", ["frog"]),
    "empty.png": ("empty, but I wrote this", ["empty"]),
    "broken.png": ("broken, but mine", ["broken"]),
}


def _library(db: Path, folder: Path, *, scan: bool = True) -> SqliteStore:
    store = SqliteStore(db)
    registered = store.add_folder(str(folder))
    if scan:
        scan_folder(store, registered, Settings(home=db.parent / (db.stem + "-home")))
    return store


def _write(store: SqliteStore, folder: Path) -> None:
    ids = {m.path: m.id for m in store.get_memes(store.meme_ids(status=None))}
    for relative, (text, tags) in WRITTEN.items():
        store.set_user_description(ids[str(folder / relative)], text)
        store.add_tags(ids[str(folder / relative)], tags)


def _written(store: SqliteStore, folder: Path) -> dict[str, tuple[str, list[str]]]:
    return {str(Path(m.path).relative_to(folder)): (m.user_description, sorted(m.tags))
            for m in store.get_memes(store.meme_ids(status=None))}


def _expected() -> dict[str, tuple[str, list[str]]]:
    return {relative: (text, sorted(tags)) for relative, (text, tags) in WRITTEN.items()}


@pytest.fixture
def export(tmp_path, folder) -> Path:
    source = _library(tmp_path / "source.db", folder)
    copies = {m.sha256 for m in source.get_memes(source.meme_ids(status=None)) if m.path.endswith(("/a.png", "/b.png", "/c.png"))}
    assert len(copies) == 1, "a, b and c are byte-identical"
    _write(source, folder)
    path = tmp_path / "export.json"
    assert export_library(source, path) == len(WRITTEN)
    source.close()
    return path


def test_identical_files_keep_their_own_records(tmp_path, folder, export):
    target = _library(tmp_path / "target.db", folder)
    assert import_library(target, export) == {"applied": len(WRITTEN), "pending": 0}
    assert _written(target, folder) == _expected()


def test_import_before_indexing_loses_nothing(tmp_path, folder, export):
    target = _library(tmp_path / "target.db", folder, scan=False)
    assert import_library(target, export) == {"applied": 0, "pending": len(WRITTEN)}
    target.close()
    target = SqliteStore(tmp_path / "target.db")  # the waiting records are in the database
    scan_folder(target, target.list_folders()[0], Settings(home=tmp_path / "target-home"))
    assert _written(target, folder) == _expected()
    assert target.pending_records() == []


def test_memes_without_a_content_hash_keep_their_records(tmp_path, folder, export):
    records = {Path(r["path"]).name: r for r in json.loads(export.read_text(encoding="utf-8"))["memes"]}
    assert records["empty.png"]["sha256"] is None  # an empty file is never hashed
    target = _library(tmp_path / "target.db", folder)
    import_library(target, export)
    assert _written(target, folder)["empty.png"] == ("empty, but I wrote this", ["empty"])


def test_a_library_moved_to_another_place_and_a_renamed_file_follow(tmp_path, folder, export):
    moved = tmp_path / "elsewhere" / "memes"
    shutil.copytree(folder, moved)
    (moved / "sub dir" / "ünïcødé 🐸.png").rename(moved / "sub dir" / "renamed frog.png")
    target = _library(tmp_path / "target.db", moved)
    assert import_library(target, export) == {"applied": len(WRITTEN), "pending": 0}
    expected = _expected()
    expected["sub dir/renamed frog.png"] = expected.pop("sub dir/ünïcødé 🐸.png")  # by content hash
    assert _written(target, moved) == expected


def test_export_import_cli(tmp_path, folder, export):
    home = tmp_path / "home"
    result = runner.invoke(app, ["--data-dir", str(home), "import", str(export)])
    assert result.exit_code == 0, result.output
    assert f"{len(WRITTEN)} wait for their files" in result.output
    (tmp_path / "bad.json").write_text('{"format": "memesearch-export", "version": 2, "memes": [{"tags": []}]}')
    result = runner.invoke(app, ["--data-dir", str(home), "import", str(tmp_path / "bad.json")])
    assert result.exit_code == 2 and "record 1" in result.output and "neither a path nor a sha256" in result.output
    result = runner.invoke(app, ["--data-dir", str(home), "export", str(tmp_path / "again.json")])
    assert result.exit_code == 0, result.output
    assert json.loads((tmp_path / "again.json").read_text(encoding="utf-8"))["memes"] == \
        json.loads(export.read_text(encoding="utf-8"))["memes"]


def test_records_waiting_in_an_old_database_survive_the_upgrade(tmp_path, folder):
    db = tmp_path / "old.db"
    conn = sqlite3.connect(db)  # a database of schema 2, whose pending imports were keyed by hash
    for migration in MIGRATIONS[:2]:
        conn.executescript(migration)
    sha = sha256_file(folder / "sub dir" / "ünïcødé 🐸.png")
    conn.execute("INSERT INTO pending_imports VALUES (?, ?)", (sha, json.dumps(
        {"sha256": sha, "paths": ["/old/place/frog.png"], "user_description": "from version 1", "tags": ["v1"],
         "ocr_text": "", "ocr_engine": None, "descriptions": []})))
    conn.execute("PRAGMA user_version = 2")
    conn.commit()
    conn.close()
    store = _library(db, folder, scan=False)
    export_library(store, tmp_path / "waiting.json")  # exported in the current format
    [waiting] = json.loads((tmp_path / "waiting.json").read_text(encoding="utf-8"))["memes"]
    assert (waiting["sha256"], waiting["path"], waiting["user_description"]) == (sha, None, "from version 1")
    scan_folder(store, store.list_folders()[0], Settings(home=tmp_path / "old-home"))
    frog = [m for m in store.get_memes(store.meme_ids()) if m.path.endswith("🐸.png")][0]
    assert (frog.user_description, frog.tags) == ("from version 1", ["v1"])
    assert store.pending_records() == []
