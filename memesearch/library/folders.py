"""Which folders can be meme folders, and what their last scans could not read.

Shared by the CLI (`add`, `status --errors`) and the web app (POST /api/folders), so both
refuse the same folders with the same sentence."""

from __future__ import annotations

import os
from pathlib import Path

from memesearch.errors import InvalidInputError
from memesearch.library.data_dir import is_internal


def validate_folder(path: Path, home: Path | None = None) -> Path:
    """An absolute, existing, readable directory that is not the data dir's own, or a clear error."""
    resolved = path.expanduser().resolve()
    if not resolved.exists():
        raise InvalidInputError(f"folder does not exist: {path}")
    if not resolved.is_dir():
        raise InvalidInputError(f"not a folder: {path}")
    if not os.access(resolved, os.R_OK | os.X_OK):
        raise InvalidInputError(f"folder is not readable: {path}")
    if home is not None and is_internal(resolved, home) and resolved != home.resolve():
        raise InvalidInputError(f"{path} holds memesearch's own data, not memes",
                                hint="only uploads/ and samples/ of the data dir hold memes")
    return resolved


def scan_problems(store) -> list[dict]:
    """What the last scan of each folder skipped (links, unreadable entries) or could not reach."""
    problems = []
    for folder in store.list_folders():
        last = folder.last_scan or {}
        if last.get("folder_error"):
            problems.append({"path": folder.path, "error": last["folder_error"]})
        problems += [{"path": item["path"], "error": item["reason"]} for item in last.get("skipped", [])]
    return problems
