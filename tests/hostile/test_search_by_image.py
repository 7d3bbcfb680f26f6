"""The hostile corpus as pictures to search by: good bytes are searched, unusable bytes are one
clear ImageError naming the reason, and the library answers normally afterwards."""

from __future__ import annotations

import io

import pytest
from PIL import Image

from memesearch.app import Core
from memesearch.config import Settings
from memesearch.errors import ImageError
from memesearch.search.by_image import search_by_image
from memesearch.templates.synthetic import photo_like
from tests.hostile.corpus import upload_cases
from tests.reliability import tried

CASES = upload_cases()
pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="module")
def core(tmp_path_factory):
    """A real SQLite library holding one meme with template features (OCR off: the service test
    already feeds this corpus to the real OCR; here the hashing and template features run)."""
    import numpy as np

    from memesearch.library.scanner import scan_folder
    from memesearch.templates.stage import run_features, run_grouping

    root = tmp_path_factory.mktemp("hostile-image-search")
    folder = root / "memes"
    folder.mkdir()
    photo_like(320, 240, np.random.default_rng(3)).save(folder / "one.png")
    opened = Core(Settings(home=root / "data", ocr_enabled=False, threads=1))
    scan_folder(opened.store, opened.store.add_folder(str(folder)), opened.settings)
    run_features(opened.store, opened.settings.max_megapixels)
    run_grouping(opened.store)
    yield opened
    opened.close()


@pytest.mark.parametrize("case", CASES, ids=[c.name.encode("unicode_escape").decode()[-40:] for c in CASES])
def test_every_hostile_picture_is_searched_or_refused_clearly(core, case):
    tried()
    name = case.name.rsplit("/", 1)[-1] or "upload"
    if case.upload_expected == "indexed":
        result = search_by_image(core, case.data, name=name)
        assert result.mode == "image" and all(hit.id for hit in result.hits)
        return
    with pytest.raises(ImageError) as caught:
        search_by_image(core, case.data, name=name)
    message = caught.value.message
    assert "\n" not in message and "Traceback" not in message and len(message) > 10
    assert case.upload_expected.split(":", 1)[1].lower() in message.lower(), (case.name, message)


def test_the_library_still_answers_afterwards(core):
    path = core.store.get_meme(core.store.meme_ids()[0]).path
    buffer = io.BytesIO()
    Image.open(path).convert("RGB").resize((240, 180)).save(buffer, "JPEG", quality=80)
    hits = search_by_image(core, buffer.getvalue()).hits
    assert [hit.path for hit in hits] == [path]
