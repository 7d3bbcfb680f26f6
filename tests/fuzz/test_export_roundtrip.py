"""Property test: export -> import into a fresh library of the same files -> export gives the same records.

Libraries are generated with byte-identical files, files without a content hash
(empty ones) and undecodable ones, nested folders, unicode names, and whatever
unicode people write; the import runs either before or after the files are indexed.
"""

from __future__ import annotations

import io
import json
import shutil
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from memesearch.config import Settings
from memesearch.errors import InvalidInputError
from memesearch.library.scanner import scan_folder
from memesearch.store.models import Description
from memesearch.store.sqlite import SqliteStore
from memesearch.store.transfer import export_library, import_library
from memesearch.text import clean_tag
from tests.reliability import tried

pytestmark = pytest.mark.timeout(300)


def _png(red: int) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", (16, 16), (red, 40, 90)).save(out, format="PNG")
    return out.getvalue()


# What a file holds: a few distinct images (files sharing one are byte-identical), bytes that
# are no image (an error meme with a hash) and an empty file (an error meme without a hash).
CONTENTS = [_png(0), _png(120), _png(250), b"this is not an image", b""]

any_text = st.text(max_size=80)  # every code point but surrogates: NUL, RTL marks, emoji, combining marks


def _valid_tag(text: str) -> bool:
    """What the tag rule accepts (text.clean_tag): 1-50 characters once trimmed, no control characters."""
    try:
        clean_tag(text)
    except InvalidInputError:
        return False
    return True


tag_name = st.text(min_size=1, max_size=50).filter(_valid_tag)
name_part = st.text(st.characters(blacklist_categories=("Cs", "Cc"), blacklist_characters="/\\"), min_size=1, max_size=10)
file_name = name_part.filter(lambda n: not n.startswith(".")).map(lambda n: n + ".png")
subfolder = st.lists(name_part.map(lambda n: "d-" + n), max_size=2).map(lambda parts: "/".join(parts))
description = st.none() | st.tuples(st.sampled_from(["florence-2-base", "smolvlm-256m"]), any_text)

meme_file = st.fixed_dictionaries({
    "relative": st.tuples(subfolder, file_name).map(lambda t: f"{t[0]}/{t[1]}" if t[0] else t[1]),
    "content": st.integers(0, len(CONTENTS) - 1),
    "user": any_text,
    "tags": st.lists(tag_name, max_size=3),
    "description": description,
})
library = st.lists(meme_file, min_size=1, max_size=7, unique_by=lambda f: f["relative"].casefold())
ocr_per_content = st.lists(st.none() | any_text, min_size=len(CONTENTS), max_size=len(CONTENTS))


def _write_files(folder: Path, files: list[dict]) -> None:
    for spec in files:
        path = folder / spec["relative"]
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(CONTENTS[spec["content"]])


def _scan(store, folder_path: Path, home: Path):
    folder = store.add_folder(str(folder_path))
    scan_folder(store, folder, Settings(home=home))


def _fill(store, folder: Path, files: list[dict], ocr: list[str | None]) -> None:
    ids = {m.path: m.id for m in store.get_memes(store.meme_ids(status=None))}
    for spec in files:
        meme_id = ids[str(folder / spec["relative"])]
        store.set_user_description(meme_id, spec["user"])
        store.add_tags(meme_id, spec["tags"])
        if spec["description"]:
            model, text = spec["description"]
            store.set_description(meme_id, Description(model_id=model, text=text, backend="onnx", dtype="int8",
                                                       revision="r1", ms=3.5, created_at=1234.5))
        text = ocr[spec["content"]]
        if text is not None and CONTENTS[spec["content"]]:
            store.set_ocr(meme_id, text, "rapidocr")  # shared by every file with these bytes


def _records(path: Path) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["memes"]


def _by_path(store, folder: Path) -> dict[str, tuple]:
    return {str(Path(m.path).relative_to(folder)): (m.user_description, sorted(m.tags), m.ocr_text, m.ocr_engine,
                     sorted((d.model_id, d.text, d.backend, d.dtype, d.revision) for d in m.descriptions))
            for m in store.get_memes(store.meme_ids(status=None))}


def _moved(record: dict, old: Path, new: Path) -> dict:
    """The record as the library at ``new`` writes it: another place, all else the same."""
    return {**record, "path": str(new / Path(record["path"]).relative_to(old)), "folder": str(new)}


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(files=library, ocr=ocr_per_content, import_first=st.booleans(), moved=st.booleans())
def test_export_import_export_gives_the_same_records(files, ocr, import_first, moved):
    """``moved``: the target library reads a copy of the folder at another place (same folder name)."""
    tried()
    root = Path(tempfile.mkdtemp(prefix="fuzz-roundtrip-"))
    try:
        folder = root / "memes"
        _write_files(folder, files)
        source = SqliteStore(root / "source.db")
        _scan(source, folder, root / "source-home")
        _fill(source, folder, files, ocr)
        first = root / "first.json"
        assert export_library(source, first) == len(files)
        expected = _by_path(source, folder)
        source.close()

        target_folder = folder
        if moved:
            target_folder = root / "elsewhere" / "memes"
            shutil.copytree(folder, target_folder)
        target = SqliteStore(root / "target.db")
        if import_first:  # the records wait in the database until the scan indexes their files
            assert import_library(target, first) == {"applied": 0, "pending": len(files)}
            _scan(target, target_folder, root / "target-home")
        else:
            _scan(target, target_folder, root / "target-home")
            assert import_library(target, first) == {"applied": len(files), "pending": 0}
        assert target.pending_records() == []
        assert _by_path(target, target_folder) == expected
        second = root / "second.json"
        export_library(target, second)
        assert _records(second) == [_moved(r, folder, target_folder) for r in _records(first)]
        target.close()
    finally:
        shutil.rmtree(root, ignore_errors=True)
