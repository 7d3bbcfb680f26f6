"""Search by image on both stores (the ``store`` fixture runs SQLite and PostgreSQL): real template
features and hashes of rendered memes, written through each store, found by bytes, copy and template."""

from __future__ import annotations

import hashlib
import io
from types import SimpleNamespace

import numpy as np
from PIL import Image

from memesearch.config import Settings
from memesearch.library.fonts import find_bold_fonts, load_font
from memesearch.library.hashing import dhash
from memesearch.search.by_image import search_by_image
from memesearch.store.models import FileRecord
from memesearch.store.templates import TemplateStore
from memesearch.templates import synthetic
from memesearch.templates.features import extract


def png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def test_search_by_image_on_both_stores(store, tmp_path):
    font = load_font(find_bold_fonts()[0], 36)
    rng = np.random.default_rng(11)
    pictures = [synthetic.photo_like(560, 480, rng) for _ in range(2)]
    # Two memes per picture (blank, captioned) and one lone meme.
    images = [pictures[0], synthetic.caption(pictures[0], "ONE DOES NOT SIMPLY", "top", font),
              pictures[1], synthetic.caption(pictures[1], "NOBODY EXPECTS IT", "bottom", font),
              synthetic.photo_like(500, 400, rng)]
    templates = TemplateStore(store)

    def add(image: Image.Image) -> int:
        data = png(image)
        meme_id = store.insert_file(FileRecord(
            path=str(tmp_path / f"{hashlib.sha256(data).hexdigest()}.png"), folder_id=None, size=len(data), mtime=1.0,
            sha256=hashlib.sha256(data).hexdigest(), phash=dhash(image), width=image.width, height=image.height,
            format="png", frames=1, status="ok"))
        templates.put_features(meme_id, extract(image))
        return meme_id

    ids = [add(image) for image in images]
    templates.save_grouping(ids, [{ids[0], ids[1]}, {ids[2], ids[3]}])
    core = SimpleNamespace(store=store, settings=Settings(home=tmp_path / "home"), ocr=None, visual=None)

    def search(data: bytes) -> list[tuple[int, str]]:
        result = search_by_image(core, data, name="q.png", limit=20)
        return [(hit.id, result.kinds[hit.id]) for hit in result.hits]

    # Without OCR captions are not compared: the blank may count as a copy by its hash alone
    # (a bottom caption changes few cells of a dHash), but the file itself comes first.
    found = search(png(images[3]))
    assert found[0] == (ids[3], "exact") and {meme_id for meme_id, _ in found} == {ids[2], ids[3]}
    resized = images[4].resize((250, 200))
    assert search(png(resized)) == [(ids[4], "duplicate")]
    other = synthetic.caption(pictures[0], "A DIFFERENT CAPTION HERE", "bottom", font)
    assert {meme_id for meme_id, _ in search(png(other))} == {ids[0], ids[1]}
    unrelated = synthetic.photo_like(500, 400, np.random.default_rng(99))
    assert search(png(unrelated)) == []
    # The library changes between searches: the kept colour layouts follow.
    added = add(unrelated)
    assert search(png(unrelated)) == [(added, "exact")]
    store.set_status([added], "missing")  # a file gone from disk is found no more
    assert search(png(unrelated)) == []
    # A stored hash that is not dhash's (an old or hand-edited row) is skipped, not fatal.
    store.insert_file(FileRecord(path=str(tmp_path / "odd.png"), folder_id=None, size=1, mtime=1.0, sha256="odd",
                                 phash="not a hash", width=1, height=1, format="png", frames=1, status="ok"))
    assert search(png(resized)) == [(ids[4], "duplicate")]
