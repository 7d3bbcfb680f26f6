"""Scanning real files: incremental rescans, moves, duplicates, missing files, bad files."""

from __future__ import annotations

import errno
import os
import shutil
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from memesearch.library import scanner
from memesearch.library.prune import prune
from memesearch.library.scanner import scan_folder
from memesearch.store.sqlite import SqliteStore


def _png(path: Path, color=(200, 30, 30), size=(64, 48)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, color).save(path)
    return path


@pytest.fixture
def lib(tmp_path, settings):
    folder = tmp_path / "memes"
    folder.mkdir()
    store = SqliteStore(tmp_path / "db.sqlite")
    registered = store.add_folder(str(folder))
    yield folder, store, registered, settings
    store.close()


def _scan(lib):
    folder, store, registered, settings = lib
    return scan_folder(store, registered, settings)


def test_records_file_facts(lib):
    folder, store, *_ = lib
    _png(folder / "a.png")
    summary = _scan(lib)
    assert summary.added == 1 and not summary.errors
    meme = store.get_meme(store.meme_ids()[0])
    assert (meme.format, meme.width, meme.height, meme.frames) == ("png", 64, 48, 1)
    assert len(meme.sha256) == 64 and len(meme.phash) == 16
    assert meme.size == (folder / "a.png").stat().st_size


def test_skips_hidden_and_system_folders(lib):
    folder, store, *_ = lib
    _png(folder / "ok" / "a.png")
    for skipped in (".hidden/b.png", "@eaDir/c.png", ".git/d.png", "node_modules/e.png", ".dot.png", "notes.txt"):
        target = folder / skipped
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((folder / "ok" / "a.png").read_bytes())
    summary = _scan(lib)
    assert summary.seen == 1 and summary.added == 1


def test_rescan_of_unchanged_files_decodes_nothing(lib, monkeypatch):
    folder, store, *_ = lib
    for i in range(5):
        _png(folder / f"{i}.png", color=(i * 40, 0, 0))
    _scan(lib)
    calls = []
    monkeypatch.setattr(scanner, "probe", lambda *a, **k: calls.append(a) or pytest.fail("decoded an unchanged file"))
    monkeypatch.setattr(scanner, "sha256_file", lambda *a, **k: pytest.fail("hashed an unchanged file"))
    summary = _scan(lib)
    assert summary.unchanged == 5 and summary.added == 0 and calls == []


def test_rename_keeps_texts_tags_and_id(lib):
    folder, store, *_ = lib
    _png(folder / "old.png")
    _scan(lib)
    meme_id = store.meme_ids()[0]
    store.set_ocr(meme_id, "SOME TEXT", "test")
    store.add_tags(meme_id, ["keeper"])
    store.set_user_description(meme_id, "mine")
    (folder / "sub").mkdir()
    os.rename(folder / "old.png", folder / "sub" / "new name.png")
    summary = _scan(lib)
    assert summary.moved == 1 and summary.added == 0 and summary.missing == 0
    meme = store.get_meme(meme_id)
    assert meme.path == str(folder / "sub" / "new name.png")
    assert (meme.ocr_text, meme.tags, meme.user_description, meme.status) == ("SOME TEXT", ["keeper"], "mine", "ok")


def test_move_between_folders_keeps_data(lib, tmp_path):
    folder, store, registered, settings = lib
    other = tmp_path / "other"
    other.mkdir()
    other_folder = store.add_folder(str(other))
    _png(folder / "a.png")
    _scan(lib)
    meme_id = store.meme_ids()[0]
    store.add_tags(meme_id, ["moved"])
    shutil.move(folder / "a.png", other / "a.png")
    scan_folder(store, other_folder, settings)  # the new location is scanned first
    _scan(lib)
    meme = store.get_meme(meme_id)
    assert meme.path == str(other / "a.png") and meme.tags == ["moved"] and meme.status == "ok"
    assert store.counts()["total"] == 1


def test_duplicates_are_linked(lib):
    folder, store, *_ = lib
    _png(folder / "a.png")
    shutil.copy(folder / "a.png", folder / "copy.png")
    summary = _scan(lib)
    assert summary.added == 2 and summary.duplicates == 1
    first, second = store.get_memes(store.meme_ids())
    assert second.duplicate_of == first.id and first.sha256 == second.sha256


def test_deleted_files_are_missing_until_pruned(lib):
    folder, store, _, settings = lib
    _png(folder / "a.png")
    _scan(lib)
    meme_id = store.meme_ids()[0]
    store.add_tags(meme_id, ["remember-me"])
    (folder / "a.png").unlink()
    assert _scan(lib).missing == 1
    assert store.get_meme(meme_id).status == "missing"
    assert store.get_meme(meme_id).tags == ["remember-me"]  # not forgotten
    _png(folder / "a.png")  # it comes back: same bytes, same meme
    _scan(lib)
    assert store.get_meme(meme_id).status == "ok"
    (folder / "a.png").unlink()
    _scan(lib)
    assert prune(store, settings.home).pruned == 1 and store.counts()["total"] == 0


def test_changed_content_drops_machine_text_keeps_user_text(lib):
    folder, store, *_ = lib
    path = _png(folder / "a.png")
    _scan(lib)
    meme_id = store.meme_ids()[0]
    store.set_ocr(meme_id, "OLD TEXT", "test")
    store.set_user_description(meme_id, "my words")
    _png(path, color=(0, 0, 255), size=(80, 40))
    os.utime(path, (1e9, 1e9))
    summary = _scan(lib)
    assert summary.changed == 1
    meme = store.get_meme(meme_id)
    assert meme.ocr_text == "" and meme.user_description == "my words" and meme.width == 80
    assert meme_id in store.pending("ocr")


def _bad_files(folder: Path) -> dict[str, bytes]:
    good = (folder / "good.png").read_bytes()
    jpeg = folder / "tmp.jpg"
    Image.new("RGB", (64, 64), (10, 200, 10)).save(jpeg)
    jpeg_bytes = jpeg.read_bytes()
    jpeg.unlink()
    bomb = bytearray(good)
    # Rewrite the IHDR width/height to 100000 x 100000 and fix its CRC: a tiny file declaring 10 gigapixels.
    bomb[16:24] = struct.pack(">II", 100_000, 100_000)
    bomb[29:33] = struct.pack(">I", zlib.crc32(bytes(bomb[12:29])))
    return {
        "empty.png": b"",
        "truncated.jpg": jpeg_bytes[: len(jpeg_bytes) // 2],
        "truncated.png": good[:60],
        "text.jpg": b"this is not an image at all\n" * 10,
        "script.png": b"<svg xmlns='http://www.w3.org/2000/svg'><script>alert(1)</script></svg>",
        "bomb.png": bytes(bomb),
    }


def test_bad_files_are_recorded_and_skipped(lib):
    folder, store, *_ = lib
    _png(folder / "good.png")
    for name, data in _bad_files(folder).items():
        (folder / name).write_bytes(data)
    summary = _scan(lib)
    errors = dict(summary.errors)
    assert set(map(lambda p: Path(p).name, errors)) == {"empty.png", "truncated.jpg", "truncated.png", "text.jpg", "script.png", "bomb.png"}
    assert "0 bytes" in errors[str(folder / "empty.png")]
    assert "MP limit" in errors[str(folder / "bomb.png")] or "decompression" in errors[str(folder / "bomb.png")]
    assert store.counts()["ok"] == 1 and store.counts()["errors"] == 6
    assert {p for p, _ in store.errors()} == set(errors)
    assert (folder / "empty.png").read_bytes() == b""  # user files are never touched


def test_symlink_outside_folder_is_refused(lib, tmp_path):
    folder, store, *_ = lib
    outside = _png(tmp_path / "secret" / "outside.png")
    (folder / "link.png").symlink_to(outside)
    (folder / "loop").symlink_to(folder, target_is_directory=True)
    _png(folder / "inside.png", color=(1, 2, 3))
    (folder / "inner-link.png").symlink_to(folder / "inside.png")
    summary = _scan(lib)
    assert any("outside" in reason for _, reason in summary.skipped)
    assert sorted(Path(p).name for p in (m.path for m in store.get_memes(store.meme_ids()))) == ["inner-link.png", "inside.png"]


def _make_unreadable(path: Path, monkeypatch) -> None:
    """Reading ``path`` fails with an OSError. Permission bits do that for a normal user; root
    reads through them (CI runs as root), so there the disk's I/O error is injected at the one
    place the scanner opens files."""
    path.chmod(0)
    if os.geteuid() != 0:
        return
    real_open = open

    def failing_open(file, *args, **kwargs):
        if Path(file) == path:
            raise OSError(errno.EIO, "Input/output error", str(file))
        return real_open(file, *args, **kwargs)

    monkeypatch.setattr("builtins.open", failing_open)


def test_unreadable_file_is_an_error(lib, monkeypatch):
    folder, store, *_ = lib
    path = _png(folder / "locked.png")
    _png(folder / "fine.png", color=(9, 9, 9))
    _make_unreadable(path, monkeypatch)
    try:
        summary = _scan(lib)
    finally:
        monkeypatch.undo()
        path.chmod(0o644)
    assert len(summary.errors) == 1 and summary.errors[0][0] == str(path) and "cannot read" in summary.errors[0][1]
    # the other file of the batch is indexed, the bad one is recorded as an error, not lost
    assert store.counts()["ok"] == 1 and [p for p, _ in store.errors()] == [str(path)]


def test_fifo_named_like_an_image_is_skipped_not_read(lib):
    """Opening a FIFO blocks until a writer comes: the scanner must never open one."""
    folder, store, *_ = lib
    os.mkfifo(folder / "pipe.png")
    _png(folder / "real.png")
    summary = _scan(lib)
    assert (str(folder / "pipe.png"), "not a regular file (a pipe, socket or device)") in summary.skipped
    assert store.counts()["ok"] == 1


def test_missing_folder_marks_memes_missing(lib):
    folder, store, *_ = lib
    _png(folder / "a.png")
    _scan(lib)
    shutil.rmtree(folder)
    summary = _scan(lib)
    assert summary.folder_error and summary.missing == 1


def test_first_frame_and_alpha_flattening(tmp_path):
    from memesearch.library.decode import load_rgb

    gif = tmp_path / "anim.gif"
    frames = [Image.new("RGB", (32, 32), c) for c in ((255, 0, 0), (0, 0, 255))]
    frames[0].save(gif, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert load_rgb(gif, 10).getpixel((5, 5))[0] > 200  # red first frame, not blue
    transparent = tmp_path / "alpha.png"
    Image.new("RGBA", (16, 16), (0, 0, 0, 0)).save(transparent)
    assert load_rgb(transparent, 10).getpixel((3, 3)) == (255, 255, 255)  # flattened on white


def test_exif_rotation_is_applied(tmp_path):
    from memesearch.library.decode import load_rgb

    image = Image.new("RGB", (40, 20), (0, 128, 0))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when displayed
    path = tmp_path / "rotated.jpg"
    image.save(path, exif=exif)
    assert load_rgb(path, 10).size == (20, 40)


def test_read_error_is_recorded_not_raised(lib, monkeypatch):
    """The same path as an unreadable file, reachable when the tests run as root."""
    folder, store, *_ = lib
    _png(folder / "a.png")
    _png(folder / "b.png", color=(9, 9, 9))

    def deny(path):
        if Path(path).name == "a.png":
            raise PermissionError(13, "Permission denied")
        return real(path)

    real = scanner.sha256_file
    monkeypatch.setattr(scanner, "sha256_file", deny)
    summary = _scan(lib)
    assert [Path(p).name for p, _ in summary.errors] == ["a.png"] and "Permission denied" in summary.errors[0][1]
    assert store.counts()["ok"] == 1


def _rows(db: Path) -> list[tuple]:
    import sqlite3

    with sqlite3.connect(db) as conn:
        return sorted(conn.execute("SELECT path, status, COALESCE(error, ''), sha256, phash, width, height FROM memes"))


def test_files_inspected_in_threads_are_stored_as_one_thread_stores_them(tmp_path, settings, monkeypatch):
    """New files are hashed and decoded a few at a time in threads; every record (good files and
    bad ones alike) is what the one-thread scan stores, and files are stored in walk order."""
    results = {}
    for threads in (1, 4):
        folder = tmp_path / f"memes{threads}"
        for index in range(9):
            _png(folder / f"m{index}.png", color=(index * 25, 40, 90), size=(64 + index, 48))
        _png(folder / "good.png")
        for name, data in _bad_files(folder).items():
            (folder / name).write_bytes(data)
        monkeypatch.setattr(scanner, "INSPECT_THREADS", threads)
        store = SqliteStore(tmp_path / f"db{threads}.sqlite")
        order: list[str] = []
        scan_folder(store, store.add_folder(str(folder)), settings, lambda event, path: order.append(Path(path).name))
        store.close()
        results[threads] = ([(Path(p).name, *rest) for p, *rest in _rows(tmp_path / f"db{threads}.sqlite")], order)
    assert results[4] == results[1]
    assert len(results[4][0]) == 16 and sum(row[1] == "error" for row in results[4][0]) == 6


def test_an_interrupted_threaded_scan_stops_at_once(lib, monkeypatch):
    """Ctrl-C (here: raised by the progress callback) stops the scan with only a few files read ahead."""
    folder, store, registered, settings = lib
    for index in range(40):
        _png(folder / f"m{index:02}.png", color=(index * 6, 0, 0))
    inspected: list[str] = []
    real = scanner.inspect_file

    def counting(path, *args):
        inspected.append(path.name)
        return real(path, *args)

    def interrupt(event, path):
        if event == "indexed":
            raise KeyboardInterrupt

    monkeypatch.setattr(scanner, "INSPECT_THREADS", 2)
    monkeypatch.setattr(scanner, "inspect_file", counting)
    with pytest.raises(KeyboardInterrupt):
        scan_folder(store, registered, settings, interrupt)
    assert store.counts()["total"] == 1, "the file in hand is stored, nothing after it"
    assert len(inspected) <= 2 * 2 + 2, "only the window of files ahead was read"
