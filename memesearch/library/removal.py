"""Removing memes from the library: rows always, files only when the app owns them.

A meme whose file lies in the uploads folder (``<data dir>/uploads``) was
written by the app, so removing it deletes that file too. Every other file
belongs to the user and is never touched: its path is remembered as excluded
(``excluded_paths``), so rescanning its folder does not bring it straight back;
``memesearch restore-meme PATH`` (or adding the file again by upload) undoes that.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from memesearch.config import Settings
from memesearch.errors import InvalidInputError

if TYPE_CHECKING:
    from memesearch.store.base import Store

log = logging.getLogger(__name__)
MAX_IDS = 1000


@dataclass
class RemovalReport:
    removed: list[int] = field(default_factory=list)
    not_found: list[int] = field(default_factory=list)
    files_deleted: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    errors: list[dict] = field(default_factory=list)

    def as_dict(self) -> dict:
        return {"removed": self.removed, "not_found": self.not_found, "files_deleted": self.files_deleted,
                "excluded": self.excluded, "errors": self.errors}


def owned_by_app(path: str | Path, settings: Settings) -> bool:
    """True for a regular file directly managed by the app: inside the uploads folder.

    The folder holding the file is resolved (so ``uploads/../x`` or a symlinked
    sub-folder pointing elsewhere does not count), the file itself is not: a
    symlink inside uploads is owned as a link, and unlinking it never follows it.
    """
    path = Path(path)
    try:
        uploads = settings.uploads_dir.resolve()
        parent = path.parent.resolve()
    except (OSError, RuntimeError):
        return False
    return parent.is_relative_to(uploads) and path.name not in ("", ".", "..")


def remove_memes(store: Store, settings: Settings, meme_ids: list[int]) -> RemovalReport:
    """Remove memes from the library (see the module docstring); unknown ids are reported, not fatal."""
    ids = list(dict.fromkeys(meme_ids))
    if not ids:
        raise InvalidInputError("give at least one meme id", hint="memesearch remove-meme 12 15")
    if len(ids) > MAX_IDS:
        raise InvalidInputError(f"at most {MAX_IDS} memes at once (got {len(ids)})")
    report = RemovalReport()
    memes = {m.id: m for m in store.get_memes(ids)}
    report.not_found = [i for i in ids if i not in memes]
    owned = {i for i, m in memes.items() if owned_by_app(m.path, settings)}
    report.excluded = [m.path for i, m in memes.items() if i not in owned]
    report.removed = store.remove_memes(list(memes), exclude_paths=report.excluded)
    kept_out = []
    for meme_id in sorted(owned & set(report.removed)):
        path = Path(memes[meme_id].path)
        try:
            os.unlink(path)
            report.files_deleted.append(str(path))
        except FileNotFoundError:
            pass
        except OSError as exc:  # the row is gone; keep the file out of the next scan instead
            log.warning("could not delete %s: %s", path, exc)
            report.errors.append({"path": str(path), "error": exc.strerror or str(exc)})
            kept_out.append(str(path))
    if kept_out:
        store.exclude_paths(kept_out)
        report.excluded += kept_out
    return report

