"""Property test: whatever unicode people write survives export -> import into a fresh library."""

from __future__ import annotations

import shutil

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

pytestmark = pytest.mark.timeout(120)

any_text = st.text(max_size=300)  # every code point but surrogates: NUL, RTL marks, emoji, combining marks


def _valid_tag(text: str) -> bool:
    """What the tag rule accepts (text.clean_tag): 1-50 characters once trimmed, no control characters."""
    try:
        clean_tag(text)
    except InvalidInputError:
        return False
    return True


tag_name = st.text(min_size=1, max_size=50).filter(_valid_tag)


def _library(root, folder, name):
    store = SqliteStore(root / f"{name}.db")
    scan_folder(store, store.add_folder(str(folder)), Settings(home=root / name))
    return store


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fuzz-export")
    for index in range(3):
        Image.new("RGB", (16, 16), (index * 80, 0, 0)).save(folder / f"m{index}.png")
    return folder


@settings(max_examples=40, deadline=None, derandomize=True,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(user=st.lists(any_text, min_size=3, max_size=3), described=any_text, ocr=any_text,
       tags=st.lists(tag_name, max_size=5))
def test_texts_and_tags_survive_export_and_import(folder, tmp_path_factory, user, described, ocr, tags):
    tried()
    root = tmp_path_factory.mktemp("roundtrip")
    source = _library(root, folder, "source")
    ids = source.meme_ids()
    for meme_id, text in zip(ids, user, strict=True):
        source.set_user_description(meme_id, text)
    source.set_ocr(ids[0], ocr, "fuzz-ocr")
    source.set_description(ids[1], Description(model_id="fuzz-model", text=described, backend="fake",
                                               dtype="fp32", revision="r1", ms=1.0))
    source.add_tags(ids[2], tags)
    before = {meme.sha256: meme for meme in source.get_memes(ids)}
    export = root / "export.json"
    assert export_library(source, export) == 3
    source.close()

    target = _library(root, folder, "target")
    assert import_library(target, export) == {"applied": 3, "pending": 0}
    after = {meme.sha256: meme for meme in target.get_memes(target.meme_ids())}
    try:
        assert set(after) == set(before)
        for sha, old in before.items():
            new = after[sha]
            assert new.user_description == old.user_description
            assert new.ocr_text == old.ocr_text
            assert sorted(new.tags) == sorted(old.tags)
            assert [(d.model_id, d.text) for d in new.descriptions] == [(d.model_id, d.text) for d in old.descriptions]
        # Importing twice changes nothing (no duplicated tags or descriptions).
        import_library(target, export)
        again = {meme.sha256: meme for meme in target.get_memes(target.meme_ids())}
        assert {s: (m.tags, len(m.descriptions)) for s, m in again.items()} == \
            {s: (m.tags, len(m.descriptions)) for s, m in after.items()}
    finally:
        target.close()
        shutil.rmtree(root, ignore_errors=True)
