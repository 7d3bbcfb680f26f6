"""Incremental folder scanning. User files are only ever read.

A rescan costs one ``stat`` per unchanged file: a file whose size and mtime
match the database is not opened at all. New or changed files are hashed and
decoded once. A new path whose bytes match a meme that vanished (same sha256)
is a move or rename: that meme keeps its id, texts, tags and vectors.
"""

from __future__ import annotations

import os
import stat as stat_module
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from memesearch.config import Settings
from memesearch.errors import ImageError
from memesearch.library.decode import EXTENSIONS, probe
from memesearch.library.hashing import dhash, sha256_file
from memesearch.store.models import FileRecord, Folder

SKIPPED_DIRS = {"@eaDir", ".git", "node_modules", "__MACOSX", "#recycle"}

ProgressCallback = Callable[[str, str], None]


@dataclass
class ScanSummary:
    folder: str
    seen: int = 0
    unchanged: int = 0
    added: int = 0
    changed: int = 0
    moved: int = 0
    missing: int = 0
    duplicates: int = 0
    excluded: int = 0  # files the user removed from the library (skipped until re-included)
    errors: list[tuple[str, str]] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    folder_error: str | None = None

    def as_dict(self) -> dict:
        return {
            "folder": self.folder, "seen": self.seen, "unchanged": self.unchanged, "added": self.added,
            "changed": self.changed, "moved": self.moved, "missing": self.missing,
            "duplicates": self.duplicates, "excluded": self.excluded, "errors": [{"path": p, "error": e} for p, e in self.errors],
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped], "folder_error": self.folder_error,
        }


def _is_hidden(name: str) -> bool:
    return name.startswith(".")


def walk_images(root: Path, summary: ScanSummary) -> Iterator[tuple[Path, os.stat_result]]:
    """Image files under ``root`` with their stat, skipping hidden and system folders.

    Directory symlinks are not followed (no loops, no escapes); a file symlink is
    followed only when its target stays inside ``root``.
    """
    real_root = root.resolve()
    for dirpath, dirnames, filenames in os.walk(root, onerror=lambda exc: summary.skipped.append((str(exc.filename), exc.strerror or str(exc)))):
        dirnames[:] = sorted(d for d in dirnames if not _is_hidden(d) and d not in SKIPPED_DIRS)
        for name in sorted(filenames):
            if _is_hidden(name) or Path(name).suffix.lower() not in EXTENSIONS:
                continue
            path = Path(dirpath) / name
            try:
                if path.is_symlink() and not path.resolve().is_relative_to(real_root):
                    summary.skipped.append((str(path), "symlink points outside the folder"))
                    continue
                info = path.stat()
            except (OSError, RuntimeError) as exc:  # RuntimeError: symlink loop on older Pythons
                summary.skipped.append((str(path), f"cannot stat: {exc}"))
                continue
            if stat_module.S_ISREG(info.st_mode):
                yield path, info


def inspect_file(path: Path, info: os.stat_result, folder_id: int, settings: Settings) -> FileRecord:
    """Hash and decode one file; an unusable file becomes a record with status 'error'."""
    record = FileRecord(path=str(path), folder_id=folder_id, size=info.st_size, mtime=info.st_mtime)
    if info.st_size == 0:
        record.status, record.error = "error", "empty file (0 bytes)"
        return record
    if info.st_size > settings.max_file_mb * 1e6:
        record.status, record.error = "error", f"file is {info.st_size / 1e6:.0f} MB, over the {settings.max_file_mb:g} MB limit"
        return record
    record.sha256 = sha256_file(path)
    try:
        image_info, rgb = probe(path, settings.max_megapixels)
    except ImageError as exc:
        record.status, record.error = "error", exc.message
        return record
    record.format, record.width, record.height, record.frames = (
        image_info.format.lower(), image_info.width, image_info.height, image_info.frames,
    )
    record.phash = dhash(rgb)
    return record


def scan_folder(store, folder: Folder, settings: Settings, progress: ProgressCallback | None = None) -> ScanSummary:
    summary = ScanSummary(folder=folder.path)
    report = progress or (lambda event, path: None)
    root = Path(folder.path)
    known = store.files_in_folder(folder.id)
    if not root.is_dir():
        summary.folder_error = "folder not found or not a directory (unmounted drive?)"
        _mark_missing(store, [row for row in known.values() if row["status"] != "missing"], summary)
        store.record_scan(folder.id, summary.as_dict())
        return summary

    seen: set[str] = set()
    fresh: list[tuple[Path, os.stat_result]] = []
    excluded = store.excluded_paths()
    for path, info in walk_images(root, summary):
        if str(path) in excluded:
            summary.excluded += 1
            continue
        summary.seen += 1
        seen.add(str(path))
        row = known.get(str(path))
        if row is not None and row["size"] == info.st_size and row["mtime"] == info.st_mtime:
            summary.unchanged += 1
            if row["status"] == "missing":
                store.set_status([row["id"]], "ok")
            report("unchanged", str(path))
        else:
            fresh.append((path, info))
            pass  # decoded below, after the walk

    vanished = {path: row for path, row in known.items() if path not in seen and row["status"] != "missing"}
    for path, info in fresh:
        try:
            record = inspect_file(path, info, folder.id, settings)
        except FileNotFoundError:
            summary.skipped.append((str(path), "vanished during the scan"))
            continue
        except OSError as exc:
            record = FileRecord(path=str(path), folder_id=folder.id, size=info.st_size, mtime=info.st_mtime,
                                status="error", error=f"cannot read: {exc.strerror or exc}")
        _store_record(store, record, known.get(str(path)), vanished, summary)
        report("indexed", str(path))

    _mark_missing(store, list(vanished.values()), summary)
    store.record_scan(folder.id, summary.as_dict())
    return summary


def _store_record(store, record: FileRecord, existing, vanished: dict, summary: ScanSummary) -> None:
    if record.status == "error":
        summary.errors.append((record.path, record.error or "unknown error"))
    if existing is not None:
        store.update_file(existing["id"], record, content_changed=record.sha256 != existing["sha256"])
        summary.changed += 1
        return
    moved_from = _find_moved(store, record, vanished)
    if moved_from is not None:
        store.update_file(moved_from["id"], record, content_changed=False)
        vanished.pop(moved_from["path"], None)
        summary.moved += 1
        return
    store.insert_file(record)
    summary.added += 1
    if record.sha256 and len(store.memes_with_sha(record.sha256)) > 1:
        summary.duplicates += 1


def _find_moved(store, record: FileRecord, vanished: dict):
    """A known meme with the same bytes whose file is gone: the new path is where it moved."""
    if not record.sha256 or record.status != "ok":
        return None
    for candidate in store.memes_with_sha(record.sha256):
        if candidate["path"] in vanished or candidate["status"] == "missing" or not os.path.lexists(candidate["path"]):
            return candidate
    return None


def _mark_missing(store, rows: list, summary: ScanSummary) -> None:
    if rows:
        store.set_status([row["id"] for row in rows], "missing")
        summary.missing += len(rows)
