"""A read-only data dir: detected once, so reads keep working and writes fail with one sentence.

A data dir is read-only when its file system is mounted read-only, when this process may not
write it, or when every write permission bit is cleared (``chmod -w``). The last rule holds for
root too, who could otherwise write anyway: a person who removed the write bits meant it.
"""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

from memesearch.errors import ReadOnlyError

READ_COMMANDS = "search, show, status, folders, export and backup"


def _existing(path: Path) -> Path:
    """``path`` or its nearest existing parent (a data dir not created yet is judged by its parent)."""
    for candidate in (path, *path.parents):
        if candidate.exists():
            return candidate
    return Path("/")


def is_read_only(path: Path | str) -> bool:
    """True when ``path`` (a folder or file; its nearest existing parent if absent) cannot be written."""
    target = _existing(Path(path))
    try:
        if os.statvfs(target).f_flag & os.ST_RDONLY:
            return True
        if not os.access(target, os.W_OK):
            return True
        return stat.S_IMODE(target.stat().st_mode) & 0o222 == 0
    except OSError:
        return True


def database_read_only(database: Path) -> bool:
    """SQLite needs its folder writable too (WAL and journal files live beside the database)."""
    return is_read_only(database.parent) or (database.exists() and is_read_only(database))


def read_only_error(home: Path | str, action: str = "change the library") -> ReadOnlyError:
    return ReadOnlyError(
        f"the data dir {home} is read-only, so memesearch cannot {action}",
        hint=f"make it writable (chmod u+w, or mount it read-write); {READ_COMMANDS} work without writing",
    )


def fallback_cache_dir(name: str) -> Path:
    """A private folder in the temp dir for caches (thumbnails, converted models) the data dir cannot hold."""
    folder = Path(tempfile.gettempdir()) / f"memesearch-{os.getuid()}" / name
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder
