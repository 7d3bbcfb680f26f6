"""Turning store records into what pages and the API show. No HTTP here."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from markupsafe import Markup, escape

from memesearch.library.data_dir import is_internal
from memesearch.library.hashing import is_hash
from memesearch.search.close_hashes import close_hashes
from memesearch.search.query import parse_query
from memesearch.store.models import Folder, Meme

if TYPE_CHECKING:
    from memesearch.store.base import Store

#: dHash bits that may differ for two files to count as near duplicates (of 64).
NEAR_DUPLICATE_BITS = 10
_SNIPPET_CHARS = 220


def meme_dict(meme: Meme, folder: Folder | None = None) -> dict:
    """The API shape of one meme (the fields of `memesearch show --json`, plus its folder)."""
    return {
        "id": meme.id, "path": meme.path, "status": meme.status, "error": meme.error, "sha256": meme.sha256,
        "phash": meme.phash, "format": meme.format, "width": meme.width, "height": meme.height,
        "frames": meme.frames, "size": meme.size, "duplicate_of": meme.duplicate_of, "ocr_text": meme.ocr_text,
        "ocr_engine": meme.ocr_engine, "user_description": meme.user_description, "tags": meme.tags,
        "descriptions": [d.__dict__ for d in meme.descriptions],
        "folder": folder.path if folder else None, "folder_id": meme.folder_id,
    }


def query_terms(query: str) -> list[str]:
    parsed = parse_query(query)
    terms = [t for t in parsed.phrases + parsed.words if len(t) >= 2]
    return sorted(set(terms), key=len, reverse=True)


def highlight(text: str, terms: list[str], limit: int = _SNIPPET_CHARS) -> Markup:
    """``text`` escaped, cut around the first match, with every term wrapped in <mark>."""
    text = " ".join(text.split())
    if not text:
        return Markup("")
    pattern = re.compile("|".join(re.escape(t) for t in terms), re.IGNORECASE) if terms else None
    first = pattern.search(text) if pattern else None
    start = max(0, first.start() - limit // 3) if first else 0
    snippet = text[start : start + limit]
    prefix, suffix = ("…" if start else ""), ("…" if start + limit < len(text) else "")
    if pattern is None:
        return Markup(escape(prefix + snippet + suffix))
    parts, last = [], 0
    for match in pattern.finditer(snippet):
        parts.append(escape(snippet[last : match.start()]))
        parts.append(Markup("<mark>") + escape(match.group(0)) + Markup("</mark>"))
        last = match.end()
    parts.append(escape(snippet[last:]))
    return Markup(escape(prefix)) + Markup("").join(parts) + Markup(escape(suffix))


def hit_text(hit) -> str:
    """The text shown under a hit: the user's words first, then the model's, then OCR."""
    return " · ".join(t for t in (hit.user_description, hit.description, hit.ocr_text) if t and t.strip())


def near_duplicates(store: Store, meme: Meme, limit: int = 24) -> list[tuple[int, int]]:
    """(id, differing bits) of memes that look the same (perceptual hash), closest first."""
    if not meme.phash or not is_hash(meme.phash):
        return []
    close = close_hashes(store, meme.phash, NEAR_DUPLICATE_BITS)
    close.pop(meme.id, None)
    return sorted(close.items(), key=lambda item: (item[1], item[0]))[:limit]


def servable_path(meme: Meme, folders: list[Folder], data_dir: Path, uploads_dir: Path) -> Path | None:
    """The meme's file when it is a meme of the library: present, an existing regular file inside
    a registered folder (or the uploads folder), links resolved. The data dir's own files
    (database, session key, thumbnails, models) are never served, even when a registered folder
    contains the data dir; its meme folders (uploads, the demo's samples) are
    (``data_dir.is_internal``, the scanner's rule)."""
    if meme.status != "ok":
        return None
    try:
        path = Path(meme.path).resolve(strict=True)
    except (OSError, RuntimeError):
        return None
    if is_internal(path, data_dir) or not path.is_file():
        return None
    roots = [Path(f.path).resolve() for f in folders] + [uploads_dir.resolve()]
    return path if any(path.is_relative_to(root) for root in roots) else None


def filters_to_query(q: str, tags: list[str], folders: list[str], described: str | None) -> str:
    """The free text plus the filter chips, in the query language the engine parses."""
    parts = [q.strip()] if q.strip() else []
    parts += [f'tag:"{t}"' for t in tags if t and '"' not in t]
    parts += [f'folder:"{f}"' for f in folders if f and '"' not in f]
    if described in ("described", "undescribed"):
        parts.append(f"is:{described}")
    return " ".join(parts)


def human_size(size: int | None) -> str:
    if not size:
        return "-"
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


#: Run kinds the header shows while they are active (the bulk work a person starts).
HEADER_RUN_KINDS = ("describe", "index")


def active_runs(request) -> list[dict]:
    """Bulk runs still queued or running, for the header of every page (so they survive a reload)."""
    try:
        runs = request.app.state.core.jobs.list_runs(20)
    except Exception:  # noqa: BLE001 - a page must render even when the job store is unreadable
        return []
    return [run.as_dict() for run in runs if run.active and run.kind in HEADER_RUN_KINDS]
