"""Incremental folder scanning. User files are only ever read.

A rescan costs one ``stat`` per unchanged file: a file whose size and mtime
match the database is not opened at all. New or changed files are hashed and
decoded once. A new path whose bytes match a meme that vanished (same sha256)
is a move or rename: that meme keeps its id, texts, tags and vectors.
"""

from __future__ import annotations

import os
import stat as stat_module
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from memesearch.config import Settings
from memesearch.errors import ImageError
from memesearch.library.data_dir import is_internal
from memesearch.library.decode import EXTENSIONS, one_line_reason, probe
from memesearch.library.hashing import dhash, sha256_file
from memesearch.store.models import FileRecord, Folder, Meme
from memesearch.store.roots import innermost_root, is_under

if TYPE_CHECKING:
    from memesearch.store.base import Store

SKIPPED_DIRS = {"@eaDir", ".git", "node_modules", "__MACOSX", "#recycle"}

ProgressCallback = Callable[[str, str], None]
INTERNAL_FOLDER = "this folder holds memesearch's own data; only uploads/ and samples/ of the data dir hold memes"


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


def walk_images(root: Path, summary: ScanSummary, *, nested_roots: frozenset[str] = frozenset(),
                home: Path | None = None) -> Iterator[tuple[Path, os.stat_result]]:
    """Image files under ``root`` with their stat, skipping hidden and system folders.

    Directory symlinks are not followed (no loops, no escapes); a file symlink is
    followed only when its target stays inside ``root``. Folders in ``nested_roots`` are
    registered roots of their own (scanned by their own pass); inside the data dir ``home``
    only the meme folders are walked (``data_dir.is_internal``).
    """
    real_root = root.resolve()
    home = home.resolve() if home is not None else None
    for dirpath, dirnames, filenames in os.walk(root, onerror=lambda exc: summary.skipped.append((str(exc.filename), exc.strerror or str(exc)))):
        in_home = home is not None and Path(dirpath).is_relative_to(home)
        dirnames[:] = sorted(
            d for d in dirnames
            if not _is_hidden(d) and d not in SKIPPED_DIRS and os.path.join(dirpath, d) not in nested_roots
            and not (in_home and is_internal(Path(dirpath) / d, home))
        )
        for name in sorted(filenames):
            if _is_hidden(name) or Path(name).suffix.lower() not in EXTENSIONS:
                continue
            path = Path(dirpath) / name
            if in_home and is_internal(path, home):
                continue  # the app's own files (thumbnails...) are not the user's memes
            try:
                if path.is_symlink():
                    if not path.resolve().is_relative_to(real_root):
                        summary.skipped.append((str(path), "symlink points outside the folder"))
                        continue
                    if home is not None and is_internal(path, home):
                        summary.skipped.append((str(path), "symlink points into memesearch's data dir"))
                        continue
                info = path.stat()
            except (OSError, RuntimeError) as exc:  # RuntimeError: symlink loop on older Pythons
                summary.skipped.append((str(path), f"cannot stat: {exc}"))
                continue
            if stat_module.S_ISREG(info.st_mode):
                yield path, info
            else:  # a FIFO would block the reader forever; devices and sockets are no pictures either
                summary.skipped.append((str(path), "not a regular file (a pipe, socket or device)"))


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
        record.phash = dhash(rgb)
    except ImageError as exc:
        record.status, record.error = "error", exc.message
        return record
    record.format, record.width, record.height, record.frames = (
        image_info.format.lower(), image_info.width, image_info.height, image_info.frames,
    )
    return record


def _is_app_folder(root: Path, home: Path) -> bool:
    """A folder of the data dir's own (thumbnails, models...). The data dir itself is fine:
    the walk takes only its meme folders."""
    return is_internal(root, home) and root.resolve() != home.resolve()


def scan_folder(store: Store, folder: Folder, settings: Settings, progress: ProgressCallback | None = None) -> ScanSummary:
    """Bring the memes of one root up to date with its files. Files inside a nested registered
    root are that root's; files already known (whatever folder they were in) keep their meme."""
    summary = ScanSummary(folder=folder.path)
    report = progress or (lambda event, path: None)
    root = Path(folder.path)
    folders = store.list_folders()
    known = {path: row for path, row in store.files_under(folder.path).items()
             if (owner := innermost_root(path, folders)) is not None and owner.id == folder.id}
    if not root.is_dir() or _is_app_folder(root, settings.home):
        summary.folder_error = (INTERNAL_FOLDER if root.is_dir()
                                else "folder not found or not a directory (unmounted drive?)")
        _mark_missing(store, [row for row in known.values() if row["status"] != "missing"], summary)
        store.record_scan(folder.id, summary.as_dict())
        return summary

    nested = frozenset(f.path for f in folders if f.id != folder.id and f.path != folder.path and is_under(f.path, folder.path))
    seen: set[str] = set()
    fresh: list[tuple[Path, os.stat_result]] = []
    revived: dict[str, list[int]] = {"ok": [], "error": []}
    claimed: list[int] = []
    excluded = store.excluded_paths()
    for path, info in walk_images(root, summary, nested_roots=nested, home=settings.home):
        if str(path) in excluded:  # removed from the library by the user: skipped until restored
            summary.excluded += 1
            continue
        summary.seen += 1
        seen.add(str(path))
        row = known.get(str(path))
        if row is not None and row["size"] == info.st_size and row["mtime"] == info.st_mtime:
            summary.unchanged += 1
            if row["status"] == "missing":  # back (re-added folder, remounted drive): as it was
                revived["error" if row["error"] else "ok"].append(row["id"])
            if row["folder_id"] != folder.id:
                claimed.append(row["id"])
            report("unchanged", str(path))
        else:
            fresh.append((path, info))  # decoded below, after the walk
    for status, ids in revived.items():
        if ids:
            store.set_status(ids, status)
    if claimed:
        store.set_folder(claimed, folder.id)

    vanished = {path: row for path, row in known.items() if path not in seen and row["status"] != "missing"}
    for path, info, outcome in _inspected(fresh, folder.id, settings):
        if isinstance(outcome, FileNotFoundError):
            summary.skipped.append((str(path), "vanished during the scan"))
            continue
        record = outcome if isinstance(outcome, FileRecord) else _error_record(path, info, folder.id, outcome)
        _store_record(store, record, known.get(str(path)), vanished, summary)
        report("indexed", str(path))

    _mark_missing(store, list(vanished.values()), summary)
    store.record_scan(folder.id, summary.as_dict())
    return summary


#: New files are hashed and decoded by this many threads (hashlib and Pillow's decoders release
#: the GIL): the scan's share of a first index, ~5 ms a file, then runs on every core.
INSPECT_THREADS = min(4, os.cpu_count() or 1)


def _inspected(fresh: list[tuple[Path, os.stat_result]], folder_id: int,
               settings: Settings) -> Iterator[tuple[Path, os.stat_result, FileRecord | Exception]]:
    """``inspect_file`` of each file, in order, a few files ahead in threads; what it raised
    for a file comes back in place of that file's record. Only a few files are ever in flight,
    so Ctrl-C stops the scan at once (the store writes stay in the caller's thread)."""
    if len(fresh) < 2 or INSPECT_THREADS < 2:
        for path, info in fresh:
            yield path, info, _inspect_or_error(path, info, folder_id, settings)
        return
    pool = ThreadPoolExecutor(INSPECT_THREADS, thread_name_prefix="scan")
    try:
        pending: deque = deque()
        for path, info in fresh:
            pending.append((path, info, pool.submit(_inspect_or_error, path, info, folder_id, settings)))
            if len(pending) >= 2 * INSPECT_THREADS:
                done_path, done_info, future = pending.popleft()
                yield done_path, done_info, future.result()
        while pending:
            done_path, done_info, future = pending.popleft()
            yield done_path, done_info, future.result()
    finally:
        pool.shutdown(wait=False, cancel_futures=True)


def _error_record(path: Path, info: os.stat_result, folder_id: int, exc: Exception) -> FileRecord:
    """Whatever one file causes is that file's error, never the folder's."""
    reason = f"cannot read: {exc.strerror or exc}" if isinstance(exc, OSError) else f"cannot index: {one_line_reason(exc)}"
    return FileRecord(path=str(path), folder_id=folder_id, size=info.st_size, mtime=info.st_mtime,
                      status="error", error=reason)


def _inspect_or_error(path: Path, info: os.stat_result, folder_id: int, settings: Settings) -> FileRecord | Exception:
    try:
        return inspect_file(path, info, folder_id, settings)
    except Exception as exc:  # noqa: BLE001 - handed back to the scan loop, which records it for this file
        return exc


def _store_record(store: Store, record: FileRecord, existing, vanished: dict, summary: ScanSummary) -> None:
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


def _find_moved(store: Store, record: FileRecord, vanished: dict):
    """A known meme with the same bytes whose file is gone: the new path is where it moved."""
    if not record.sha256 or record.status != "ok":
        return None
    for candidate in store.memes_with_sha(record.sha256):
        # Only a meme whose file is really gone: a removed folder's meme (missing, file still
        # there) keeps its own file, and a copy of it becomes a meme of its own.
        if not os.path.lexists(candidate["path"]):
            return candidate
    return None


def _mark_missing(store: Store, rows: list, summary: ScanSummary) -> None:
    if rows:
        store.set_status([row["id"] for row in rows], "missing")
        summary.missing += len(rows)


def mark_unreadable(store: Store, meme: Meme, message: str) -> None:
    """A known file that no longer decodes (found by a later stage): it becomes an error row,
    listed by ``status --errors`` and not retried until its size or mtime changes (the next scan
    re-inspects a changed file; a vanished one becomes missing)."""
    record = FileRecord(path=meme.path, folder_id=meme.folder_id, size=meme.size, mtime=meme.mtime,
                        sha256=meme.sha256, phash=meme.phash, width=meme.width, height=meme.height,
                        format=meme.format, frames=meme.frames, status="error", error=message)
    store.update_file(meme.id, record, content_changed=False)
