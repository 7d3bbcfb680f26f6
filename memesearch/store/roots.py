"""Registered folders are a set of roots: which root a path belongs to.

A file is one meme however many roots reach it; it belongs to the innermost
registered folder containing it (``memes.folder_id``), so nested folders never
claim the same file twice and removing one root hands its memes to the next
outer root, if any.
"""

from __future__ import annotations

from collections.abc import Iterable

from memesearch.store.models import Folder


def path_prefix(root: str) -> str:
    """``root`` with exactly one trailing slash: paths starting with it lie inside ``root``."""
    return root if root.endswith("/") else root + "/"


def is_under(path: str, root: str) -> bool:
    """True when ``path`` is ``root`` itself or lies inside it (plain string paths, as stored)."""
    return path == root or path.startswith(path_prefix(root))


def innermost_root(path: str, folders: Iterable[Folder]) -> Folder | None:
    """The registered folder deepest in the tree that contains ``path`` (None: no root reaches it)."""
    reaching = [folder for folder in folders if is_under(path, folder.path)]
    return max(reaching, key=lambda folder: len(folder.path), default=None)


def reassignments(rows: Iterable, folders: list[Folder]) -> dict[int | None, list[int]]:
    """Meme ids (``row["id"]``, ``row["path"]``) grouped by the folder id that now reaches them
    (None: no root does any more)."""
    grouped: dict[int | None, list[int]] = {}
    for row in rows:
        root = innermost_root(row["path"], folders)
        grouped.setdefault(root.id if root else None, []).append(row["id"])
    return grouped
