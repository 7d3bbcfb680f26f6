"""Export and import of what people and models wrote about memes: one record per meme, keyed by path.

The export is a JSON document (``FORMAT``, ``VERSION``) with one record per meme,
missing and unreadable ones included. A record says where its file was - the
absolute path, the registered folder that reached it and the path relative to
that folder - and holds the user's description, tags, OCR text and the generated
descriptions with the model, backend, dtype and revision that wrote them.

Import finds each record's meme by path, never by content alone, so byte-identical
files keep their own records:

1. the meme at the record's absolute path;
2. else the meme at the record's relative path under a registered folder of the
   same name (the library moved to another disk or machine), when exactly one does;
3. else, to follow a moved or renamed file, the meme with the record's content hash
   - only when that is unambiguous: the record is the only one of the import with
   that hash, exactly one meme with that hash got no record of its own, and the
   record's own file is not on disk any more (it may simply not be indexed yet).

Records that find no meme wait in the ``pending_imports`` table (both stores) and
are applied when their file is indexed: ``insert_file`` calls ``pending_for_new_meme``
with the new file's path and hash (same three rules, seen from the file's side).
Each import also retries the records still waiting. A pending record is exported
again as it is, so nothing imported is lost even if its file never comes.

Applying a record merges, it never overwrites: an empty user description or OCR
text is filled, descriptions of models the meme lacks and missing tags are added.
Version 1 exports (records keyed by content hash, with a ``paths`` list) still
import: each of their paths becomes a record of its own.
"""

from __future__ import annotations

import json
import os
import time
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path, PurePosixPath

from memesearch.errors import InvalidInputError
from memesearch.text import clean_tag, clean_text

FORMAT = "memesearch-export"
VERSION = 2
_EXPORT_CHUNK = 1000


# -- where a file is ------------------------------------------------------------------
def folder_of(path: str, folder_paths: Iterable[str]) -> str | None:
    """The registered folder that reaches ``path`` (the innermost one when folders nest)."""
    inside = [f for f in folder_paths if _is_under(path, f)]
    return max(inside, key=len) if inside else None


def _is_under(path: str, folder: str) -> bool:
    return path.startswith(folder.rstrip("/") + "/")


def _relative(path: str, folder: str) -> str:
    return PurePosixPath(path).relative_to(folder).as_posix()


def _folder_name(folder: str | None) -> str:
    return PurePosixPath(folder).name if folder else ""


def _join(folder: str, relative: str) -> str:
    return str(Path(folder) / relative)


def relative_keys(path: str, folder_paths: Iterable[str]) -> list[tuple[str, str]]:
    """(folder name, relative path) of ``path`` under every registered folder that reaches it."""
    return [(_folder_name(f), _relative(path, f)) for f in folder_paths if _is_under(path, f)]


def _may_still_come(record: Mapping, folder_paths: Sequence[str]) -> bool:
    """Whether the record's own file is still where it was, in a registered folder: then it is
    not a moved file, and it gets its record by path when it is indexed."""
    candidates = [record["path"]] if record.get("path") and folder_of(record["path"], folder_paths) else []
    if record.get("relative"):
        name = record.get("folder_name", _folder_name(record.get("folder")))
        candidates += [_join(f, record["relative"]) for f in folder_paths if _folder_name(f) == name]
    return any(os.path.lexists(p) for p in candidates)


# -- export -----------------------------------------------------------------------------
def record_of(meme, folder_paths: Sequence[str]) -> dict:
    """The export record of one meme."""
    folder = folder_of(meme.path, folder_paths)
    return {
        "path": meme.path,
        "folder": folder,
        "relative": _relative(meme.path, folder) if folder else None,
        "sha256": meme.sha256,
        "user_description": meme.user_description,
        "tags": sorted(meme.tags, key=str.casefold),
        "ocr_text": meme.ocr_text,
        "ocr_engine": meme.ocr_engine,
        "descriptions": [
            {"model_id": d.model_id, "text": d.text, "backend": d.backend, "dtype": d.dtype,
             "revision": d.revision, "ms": d.ms, "created_at": d.created_at}
            for d in sorted(meme.descriptions, key=lambda d: d.model_id)
        ],
    }


def export_library(store, path: Path) -> int:
    """Write every meme's record, and every record still waiting for its file, to ``path``."""
    folder_paths = [f.path for f in store.list_folders()]
    ids = store.meme_ids(status=None)
    records = []
    for start in range(0, len(ids), _EXPORT_CHUNK):
        records += [record_of(m, folder_paths) for m in store.get_memes(ids[start:start + _EXPORT_CHUNK])]
    records += [record for _, record in _waiting(store)]
    records.sort(key=lambda r: (r.get("path") or "", r.get("sha256") or ""))
    document = {"format": FORMAT, "version": VERSION, "exported_at": time.time(), "memes": records}
    path = Path(path)
    tmp = path.with_name(path.name + ".tmp")
    # A file name that is not valid UTF-8 keeps its bytes as \udcXX escapes (valid JSON).
    tmp.write_text(json.dumps(document, ensure_ascii=False, indent=1), encoding="utf-8", errors="backslashreplace")
    tmp.replace(path)
    return len(records)


# -- reading an export --------------------------------------------------------------------
def read_document(path: Path) -> list[dict]:
    """The records of an export file (any version), checked and normalised; InvalidInputError if unusable."""
    try:
        document = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InvalidInputError(f"cannot read export file {path}: {exc}") from exc
    if not isinstance(document, dict) or document.get("format") != FORMAT:
        raise InvalidInputError(f"{path} is not a memesearch export (missing format marker)")
    version = document.get("version", 1)
    if not isinstance(version, int) or version > VERSION:
        raise InvalidInputError(f"{path} was written by a newer memesearch (export version {version})")
    memes = document.get("memes", [])
    if not isinstance(memes, list):
        raise InvalidInputError(f"{path}: 'memes' is not a list")
    records: list[dict] = []
    for index, raw in enumerate(memes):
        try:
            records += _records_v1(raw) if version < 2 else [normalise(raw)]
        except (TypeError, ValueError, KeyError) as exc:
            raise InvalidInputError(f"{path}: record {index + 1} is malformed ({exc})") from exc
    return records


def _records_v1(raw: dict) -> list[dict]:
    """A version 1 record (keyed by hash, with every path of that hash): one record per path."""
    if not isinstance(raw, dict):
        raise TypeError("not an object")
    paths = raw.get("paths") or [None]
    if not isinstance(paths, list):
        raise TypeError("'paths' is not a list")
    return [normalise({**raw, "path": p}) for p in paths]


def normalise(raw) -> dict:
    """A record with every field present and of the right type; texts cleaned, keys left exact."""
    if not isinstance(raw, dict):
        raise TypeError("not an object")
    record = {
        "path": _optional_str(raw, "path"),
        "folder": _optional_str(raw, "folder"),
        "relative": _optional_str(raw, "relative"),
        "sha256": _optional_str(raw, "sha256"),
        "user_description": clean_text(_str(raw, "user_description")),
        "tags": _tags(_list(raw, "tags")),
        "ocr_text": clean_text(_str(raw, "ocr_text")),
        "ocr_engine": _optional_str(raw, "ocr_engine"),
        "descriptions": [_description(d) for d in _list(raw, "descriptions")],
    }
    if not (record["path"] or record["sha256"]):
        raise ValueError("it has neither a path nor a sha256")
    relative = PurePosixPath(record["relative"] or "")
    if relative.is_absolute() or ".." in relative.parts:
        raise ValueError("its relative path leaves its folder")
    return record


def _str(raw: dict, key: str) -> str:
    value = raw.get(key) or ""
    if not isinstance(value, str):
        raise TypeError(f"'{key}' is not a string")
    return value


def _optional_str(raw: dict, key: str) -> str | None:
    return _str(raw, key) or None


def _list(raw: dict, key: str) -> list:
    value = raw.get(key) or []
    if not isinstance(value, list):
        raise TypeError(f"'{key}' is not a list")
    return value


def _tags(values: list) -> list[str]:
    """The tag names that pass the one tag rule (text.clean_tag); a name it refuses (control
    characters, too long, empty) is dropped rather than failing the whole import."""
    names = []
    for value in values:
        if not isinstance(value, str):
            raise TypeError("a tag is not a string")
        try:
            names.append(clean_tag(value))
        except InvalidInputError:
            continue
    return names


def _description(raw) -> dict:
    if not isinstance(raw, dict) or not isinstance(raw.get("model_id"), str) or not isinstance(raw.get("text"), str):
        raise TypeError("a description has no model_id or text")
    ms, created_at = raw.get("ms"), raw.get("created_at")
    for name, number in (("ms", ms), ("created_at", created_at)):
        if number is not None and (isinstance(number, bool) or not isinstance(number, (int, float))):
            raise TypeError(f"a description's '{name}' is not a number")
    return {"model_id": clean_text(raw["model_id"]), "text": clean_text(raw["text"]),
            "backend": clean_text(_str(raw, "backend")), "dtype": clean_text(_str(raw, "dtype")),
            "revision": clean_text(_str(raw, "revision")), "ms": ms, "created_at": created_at}


def pending_columns(record: Mapping) -> tuple[str, str, str, str | None]:
    """(path, folder name, relative path, sha256): the indexed columns of a pending row."""
    return record.get("path") or "", _folder_name(record.get("folder")), record.get("relative") or "", record.get("sha256")


# -- import ---------------------------------------------------------------------------------
def _waiting(store) -> list[tuple[int, dict]]:
    """The pending records, in the current format (rows from schema 2 hold version 1 records)."""
    return [(pid, record if "relative" in record else normalise(record))
            for pid, record in store.pending_records()]


def import_library(store, path: Path) -> dict[str, int]:
    """Merge an export file into the library: {"applied": records applied now, "pending": records waiting}."""
    incoming = read_document(path)
    waiting = _waiting(store)
    # A record of this import replaces a waiting one for the same file.
    new_paths = {r["path"] for r in incoming if r["path"]}
    new_hash_only = {r["sha256"] for r in incoming if not r["path"]}
    replaced = {pid for pid, r in waiting
                if (r.get("path") in new_paths if r.get("path") else r.get("sha256") in new_hash_only)}
    kept = [(pid, r) for pid, r in waiting if pid not in replaced]
    records = incoming + [r for _, r in kept]
    matches = resolve(store, records)
    applied = [(meme_id, records[index]) for index, meme_id in sorted(matches.items())]
    done = replaced | {kept[index - len(incoming)][0] for index in matches if index >= len(incoming)}
    new_waiting = [r for index, r in enumerate(incoming) if index not in matches]
    store.apply_import(applied, sorted(done), new_waiting)
    return {"applied": len(applied), "pending": len(records) - len(matches)}


def resolve(store, records: Sequence[Mapping]) -> dict[int, int]:
    """record index -> meme id for every record that finds its meme (rules in the module docstring)."""
    folder_paths = [f.path for f in store.list_folders()]
    matches: dict[int, int] = {}
    claimed: set[int] = set()

    def claim(index: int, meme_id: int) -> None:
        matches[index] = meme_id
        claimed.add(meme_id)

    # 1. The absolute path.
    at_path = store.memes_at_paths([r["path"] for r in records if r.get("path")])
    for index, record in enumerate(records):
        meme_id = at_path.get(record.get("path"))
        if meme_id is not None and meme_id not in claimed:
            claim(index, meme_id)

    # 2. The relative path under a registered folder of the same name.
    candidates = {
        index: [_join(f, r["relative"]) for f in folder_paths if _folder_name(f) == _folder_name(r.get("folder"))]
        for index, r in enumerate(records) if index not in matches and r.get("relative")
    }
    at_relative = store.memes_at_paths([p for paths in candidates.values() for p in paths])
    for index, paths in candidates.items():
        found = {at_relative[p] for p in paths if p in at_relative} - claimed
        if len(found) == 1:
            claim(index, found.pop())

    # 3. The content hash, for a moved file, when unambiguous.
    by_hash: dict[str, list[int]] = defaultdict(list)
    for index, record in enumerate(records):
        if record.get("sha256"):
            by_hash[record["sha256"]].append(index)
    for sha, indexes in by_hash.items():
        unmatched = [i for i in indexes if i not in matches]
        if len(unmatched) != 1 or _may_still_come(records[unmatched[0]], folder_paths):
            continue
        free = [row["id"] for row in store.memes_with_sha(sha) if row["id"] not in claimed]
        if len(free) == 1:
            claim(unmatched[0], free[0])
    return matches


def pending_for_new_meme(path: str, sha256: str | None, folder_paths: Sequence[str],
                         same_bytes: int, rows: Sequence[Mapping]) -> Mapping | None:
    """The waiting record that belongs to a file being indexed, or None.

    ``rows`` are the pending rows that share the file's path, relative path or hash
    (with ``path``, ``folder_name``, ``relative``, ``sha256``); ``same_bytes`` counts
    the memes with the file's hash, the new one included. Called by the stores'
    ``insert_file`` inside the transaction that creates the meme.
    """
    exact = [r for r in rows if r["path"] and r["path"] == path]
    if exact:
        return exact[0]
    keys = set(relative_keys(path, folder_paths))
    by_relative = [r for r in rows if r["relative"] and (r["folder_name"], r["relative"]) in keys]
    if len(by_relative) == 1:
        return by_relative[0]
    if by_relative or not sha256 or same_bytes != 1:
        return None
    by_hash = [r for r in rows if r["sha256"] == sha256]
    if len(by_hash) == 1 and not _may_still_come(by_hash[0], folder_paths):
        return by_hash[0]
    return None
