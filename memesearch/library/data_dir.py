"""Which files of the data dir are the app's own.

The data dir may sit inside a registered folder, and it holds meme folders
(``uploads/``, the demo's ``samples/``) beside the app's own files (database,
thumbnails, models, keys, queue). Inside the data dir only the meme folders are
library content: an allow-list rather than a list of internal files, so a file
the app adds there later can never be indexed or served by accident.
"""

from __future__ import annotations

from pathlib import Path

MEME_FOLDERS = ("uploads", "samples")


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # a link loop: compare as written
        return path.absolute()


def is_internal(path: Path | str, home: Path | str) -> bool:
    """True when ``path`` lies inside the data dir ``home`` but outside its meme folders."""
    path, home = _resolved(Path(path)), _resolved(Path(home))
    if not path.is_relative_to(home):
        return False
    parts = path.relative_to(home).parts
    return not parts or parts[0] not in MEME_FOLDERS
