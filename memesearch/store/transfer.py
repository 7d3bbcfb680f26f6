"""Export and import of what people and models wrote about memes, keyed by content hash.

The export is a JSON document that survives moving a library to another machine
or path: records are keyed by sha256, not by id or path. Import applies a
record to every meme with that hash; records whose file is not in the library
yet are kept in ``pending_imports`` and applied when the file is indexed, so an
import never loses data.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

from memesearch.errors import InvalidInputError
from memesearch.store import sqlite_text
from memesearch.text import clean_tag, clean_text

FORMAT = "memesearch-export"
VERSION = 1


def export_library(store, path: Path) -> int:
    records: dict[str, dict] = {}
    for meme in store.get_memes(store.meme_ids(status=None)):
        if not meme.sha256:
            continue
        record = records.setdefault(
            meme.sha256,
            {"sha256": meme.sha256, "paths": [], "ocr_text": "", "ocr_engine": None,
             "user_description": "", "descriptions": [], "tags": []},
        )
        record["paths"].append(meme.path)
        record["ocr_text"] = record["ocr_text"] or meme.ocr_text
        record["ocr_engine"] = record["ocr_engine"] or meme.ocr_engine
        record["user_description"] = record["user_description"] or meme.user_description
        known_models = {d["model_id"] for d in record["descriptions"]}
        record["descriptions"] += [
            {"model_id": d.model_id, "text": d.text, "backend": d.backend, "dtype": d.dtype,
             "revision": d.revision, "ms": d.ms, "created_at": d.created_at}
            for d in meme.descriptions if d.model_id not in known_models
        ]
        record["tags"] = sorted(set(record["tags"]) | set(meme.tags))
    for sha, payload in store.pending_imports().items():
        records.setdefault(sha, payload)
    document = {"format": FORMAT, "version": VERSION, "exported_at": time.time(),
                "memes": sorted(records.values(), key=lambda r: r["sha256"])}
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(document, ensure_ascii=False, indent=1), encoding="utf-8")
    tmp.replace(path)
    return len(records)


def _clean_strings(value):
    """Control characters dropped from every string of a record (see text.clean_text)."""
    if isinstance(value, str):
        return clean_text(value)
    if isinstance(value, list):
        return [_clean_strings(item) for item in value]
    if isinstance(value, dict):
        return {key: _clean_strings(item) for key, item in value.items()}
    return value


def _valid_tags(names: list) -> list[str]:
    """Tag names that pass the one tag rule (text.clean_tag); others are dropped, not fatal for the import."""
    valid = []
    for name in names:
        try:
            valid.append(clean_tag(name))
        except InvalidInputError:
            continue
    return valid


def import_library(store, path: Path) -> dict[str, int]:
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"cannot read export file {path}: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise InvalidInputError(f"{path} is not a memesearch export (missing format marker)")
    if document.get("version", 0) > VERSION:
        raise InvalidInputError(f"{path} was written by a newer memesearch (export version {document['version']})")
    applied = pending = 0
    for record in map(_clean_strings, document.get("memes", [])):
        if isinstance(record, dict) and isinstance(record.get("tags"), list):
            record["tags"] = _valid_tags(record["tags"])
        sha = record.get("sha256")
        if not isinstance(sha, str):
            raise InvalidInputError(f"{path}: a record has no sha256")
        targets = [row["id"] for row in store.memes_with_sha(sha)]
        if not targets:
            store.put_pending_import(sha, record)
            pending += 1
            continue
        store.apply_import(targets, record)
        applied += 1
    return {"applied": applied, "pending": pending}


def apply_payload(conn: sqlite3.Connection, meme_id: int, record: dict) -> None:
    """SQLite: merge one export record into a meme: fill empty texts, add descriptions and tags.

    Stores apply records through their ``apply_import`` method; this is the SQLite
    store's implementation (PostgresStore has its own with the same rules).
    """
    conn.execute(
        "UPDATE memes SET user_description = CASE WHEN user_description = '' THEN ? ELSE user_description END, "
        "ocr_text = CASE WHEN ocr_engine IS NULL THEN ? ELSE ocr_text END, "
        "ocr_engine = COALESCE(ocr_engine, ?) WHERE id = ?",
        (record.get("user_description", ""), record.get("ocr_text", ""), record.get("ocr_engine"), meme_id),
    )
    if record.get("ocr_engine"):
        conn.execute(
            "INSERT INTO stages (meme_id, stage, status, updated_at) VALUES (?, 'ocr', 'done', ?) "
            "ON CONFLICT (meme_id, stage) DO UPDATE SET status = 'done'",
            (meme_id, time.time()),
        )
    for d in record.get("descriptions", []):
        conn.execute(
            "INSERT OR IGNORE INTO descriptions (meme_id, model_id, text, backend, dtype, revision, ms, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (meme_id, d["model_id"], d["text"], d.get("backend", ""), d.get("dtype", ""), d.get("revision", ""),
             d.get("ms"), d.get("created_at") or time.time()),
        )
    for name in record.get("tags", []):
        conn.execute("INSERT OR IGNORE INTO tags (name) VALUES (?)", (name,))
        conn.execute("INSERT OR IGNORE INTO meme_tags (meme_id, tag_id) SELECT ?, id FROM tags WHERE name = ?", (meme_id, name))
    conn.execute("DELETE FROM pending_imports WHERE sha256 = (SELECT sha256 FROM memes WHERE id = ?)", (meme_id,))
    sqlite_text.reindex(conn, meme_id)
