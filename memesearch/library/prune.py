"""``prune``: forget memes whose file is truly gone.

A meme that left the library because its folder was removed keeps its texts and
tags while its file exists: adding a folder that reaches it again brings it back.
Only a file that no longer exists (or one of the data dir's own files, which an
older version may have indexed) is forgotten. A meme whose registered folder is
unreachable (an unmounted drive) is kept: its file is probably not gone.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from memesearch.library.data_dir import is_internal

if TYPE_CHECKING:
    from memesearch.store.base import Store


@dataclass
class PruneSummary:
    pruned: int = 0
    kept: int = 0  # missing memes whose file still exists (outside every folder) or may come back

    def as_dict(self) -> dict:
        return {"pruned": self.pruned, "kept": self.kept}


def _gone(path: str, folder_path: str | None, home: Path) -> bool:
    if is_internal(path, home):
        return True
    if os.path.lexists(path):
        return False
    return folder_path is None or os.path.isdir(folder_path)


def prune(store: Store, home: Path) -> PruneSummary:
    folder_paths = {folder.id: folder.path for folder in store.list_folders()}
    gone, kept = [], 0
    for row in store.missing_files():
        if _gone(row["path"], folder_paths.get(row["folder_id"]), home):
            gone.append(row["id"])
        else:
            kept += 1
    return PruneSummary(pruned=store.delete_memes(gone) if gone else 0, kept=kept)
