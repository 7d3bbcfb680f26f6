"""Search by image with an image-text model installed: the tiny CLIP loaded as the app loads it,
the library's image vectors made by the index's image-embed stage, the query embedded by
``search_by_image`` itself. CLIP neighbours above the spec's ``image_floor`` are the "similar"
tier, below every stronger kind.

The tiny CLIP has random weights, so no picture is "about" anything: each test reads the
model's own image-to-image cosines and sets the floor (a models.yml override, as a user
would) around them.
"""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
from PIL import Image

from memesearch.library.decode import load_rgb
from memesearch.search.by_image import search_by_image
from memesearch.templates import synthetic
from tests.visual.conftest import floor_override, indexed_core, visual_core


def _png(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return buffer.getvalue()


def _cosines(core, image: Image.Image) -> dict[int, float]:
    """The model's own cosines of ``image`` to every meme's stored image vector."""
    query = core.visual.embed_images([image])[0]
    ids, matrix = core.store.load_vectors(core.visual.space)
    return {int(meme_id): float(vector @ query) for meme_id, vector in zip(ids, matrix)}


def _found(core, data: bytes) -> list[tuple[int, str, float]]:
    result = search_by_image(core, data, name="query.png", limit=50)
    return [(hit.id, result.kinds[hit.id], hit.score) for hit in result.hits]


def _with_image_floor(core, floor: float):
    """A fresh Core on the same library whose spec's image floor is ``floor`` (vectors already stored)."""
    (core.settings.home / "models.yml").write_text(floor_override(image_floor=floor), encoding="utf-8")
    return visual_core(core.settings.home, core.settings.database_url)


def test_clip_neighbours_find_a_picture_nothing_else_matches(tmp_path, clip_models, database_url):
    core = indexed_core(tmp_path, clip_models, database_url)
    # A new photo: no bytes, perceptual hash or template features in common with the library.
    query = synthetic.photo_like(600, 480, np.random.default_rng(2024))
    data = _png(query)
    blind = visual_core(core.settings.home, database_url, visual_model="none")
    assert blind.visual is None and _found(blind, data) == []
    blind.close()

    cosines = _cosines(core, query)
    assert set(cosines) == set(core.store.meme_ids())  # the index stage embedded every meme
    ranked = sorted(cosines, key=cosines.get, reverse=True)
    best, second = cosines[ranked[0]], cosines[ranked[1]]
    assert best - second > 1e-4, cosines  # the floor below can sit between them

    # Only the nearest meme is above a floor between the two best cosines.
    one = _with_image_floor(core, (best + second) / 2)
    assert [(meme_id, kind) for meme_id, kind, _ in _found(one, data)] == [(ranked[0], "similar")]
    one.close()
    # A picture unlike everything (its best cosine under the floor) finds nothing.
    none = _with_image_floor(core, (best + 1.0) / 2)
    assert _found(none, data) == []
    none.close()
    # A floor under every cosine: each meme once, all "similar", scores in that tier's band, best first.
    every = _with_image_floor(core, min(cosines.values()) - 0.01)
    hits = _found(every, data)
    assert sorted(meme_id for meme_id, _, _ in hits) == sorted(cosines)
    assert {kind for _, kind, _ in hits} == {"similar"} and all(score <= 0.49 for _, _, score in hits)
    assert [score for _, _, score in hits] == sorted((score for _, _, score in hits), reverse=True)
    every.close()
    core.close()


def test_a_stronger_kind_keeps_its_place_and_clip_adds_the_rest(tmp_path, clip_models):
    core = indexed_core(tmp_path, clip_models)
    meme = core.store.get_memes(core.store.meme_ids())[1]
    # The same pixels re-encoded: the same hash, a CLIP cosine of 1.
    image = load_rgb(Path(meme.path), 64.0)
    data = _png(image)
    cosines = _cosines(core, image)
    assert cosines[meme.id] >= 0.9999 and max(cosines, key=cosines.get) == meme.id

    low = _with_image_floor(core, min(cosines.values()) - 0.01)
    hits = _found(low, data)
    # The copy first (by its bytes or, OCR being off, its hash), then every other meme by CLIP, none twice.
    assert hits[0][0] == meme.id and hits[0][1] in ("exact", "duplicate")
    assert sorted(meme_id for meme_id, _, _ in hits) == sorted(cosines)
    assert {kind for _, kind, _ in hits[1:]} == {"similar"}
    low.close()
    core.close()
