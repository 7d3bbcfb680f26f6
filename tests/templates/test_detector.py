"""The detector on each change memes go through, and on what must not group them."""

from __future__ import annotations

import numpy as np
import pytest

from memesearch.library.fonts import find_bold_fonts
from memesearch.templates import synthetic as s
from memesearch.templates.features import extract
from memesearch.templates.record import TemplateFeatures
from memesearch.templates.matching import verify

CAPTION = "when the build passes on the first try"
OTHER_CAPTION = "nobody: absolutely nobody: me at 3 am"


@pytest.fixture(scope="module")
def font():
    return find_bold_fonts()[0]


@pytest.fixture(scope="module")
def picture():
    return s.photo_like(560, 480, np.random.default_rng(11))


@pytest.fixture(scope="module")
def other_picture():
    return s.photo_like(560, 480, np.random.default_rng(12))


@pytest.fixture(scope="module")
def blank(picture, features_of):
    return features_of(picture)


CHANGES = {
    "captioned": lambda im, f: s.caption(im, CAPTION, "top-bottom", f),
    "banner": lambda im, f: s.caption(im, CAPTION, "banner", f),
    "half size": lambda im, f: s.resize(s.caption(im, CAPTION, "top", f), 0.5),
    "double size": lambda im, f: s.resize(s.caption(im, CAPTION, "bottom", f), 2.0),
    "cropped 10% a side": lambda im, f: s.crop(s.caption(im, CAPTION, "top-bottom", f), 0.1, 0.1, 0.1, 0.1),
    "jpeg quality 40": lambda im, f: s.jpeg(s.caption(im, CAPTION, "top-bottom", f), 40),
    "border": lambda im, f: s.frame(s.caption(im, CAPTION, "top", f), 0.08, (20, 200, 90)),
    "watermark": lambda im, f: s.watermark(s.caption(im, CAPTION, "bottom", f), "@memelord42"),
    "banner cropped, framed, re-compressed": lambda im, f: s.jpeg(
        s.frame(s.crop(s.caption(im, CAPTION, "banner", f), 0.05, 0.08, 0.05, 0.02), 0.05, (0, 0, 0)), 55),
}


@pytest.mark.parametrize("change", CHANGES)
def test_a_changed_meme_shares_the_blank_templates_picture(change, picture, font, blank, features_of):
    variant = features_of(CHANGES[change](picture, font))
    verdict = verify(variant, blank)
    assert verdict.same, f"{change}: {verdict.inliers} inliers"
    # The global vector must put the pair close enough to be a candidate.
    assert float(variant.vector @ blank.vector) > 0.3


def test_two_captions_of_one_template_group(picture, font, features_of):
    first = features_of(s.caption(picture, CAPTION, "top-bottom", font))
    second = features_of(s.jpeg(s.resize(s.caption(picture, OTHER_CAPTION, "top", font), 0.7), 60))
    assert verify(first, second).same


def test_the_same_caption_on_another_picture_does_not_group(picture, other_picture, font, features_of):
    first = features_of(s.caption(picture, CAPTION, "top-bottom", font))
    second = features_of(s.caption(other_picture, CAPTION, "top-bottom", font))
    assert not verify(first, second).same


@pytest.mark.parametrize("layout", ["top-bottom", "banner"])
def test_plain_backgrounds_with_the_same_caption_do_not_group(layout, font, features_of):
    rng = np.random.default_rng(5)
    first = features_of(s.caption(s.plain_background(560, 480, rng), CAPTION, layout, font))
    second = features_of(s.caption(s.plain_background(560, 480, rng), CAPTION, layout, font))
    assert not verify(first, second).same


def test_unmasked_captions_alone_are_the_trap_masking_removes(picture, other_picture, font, features_of):
    """Without the OCR mask, identical captions on different pictures produce consistent matches;
    with it, they produce none: the mask is what keeps fonts from grouping memes."""
    first_image = s.caption(picture, CAPTION, "top-bottom", font)
    second_image = s.caption(other_picture, CAPTION, "top-bottom", font)
    unmasked = verify(extract(first_image), extract(second_image)).inliers
    masked = verify(features_of(first_image), features_of(second_image)).inliers
    assert masked < unmasked


def test_features_survive_storage(blank):
    restored = TemplateFeatures.from_bytes(*blank.to_bytes())
    assert restored.descriptors.tobytes() == blank.descriptors.tobytes()
    assert np.allclose(restored.points, blank.points, atol=0.25)  # float16 pixel coordinates
    assert verify(restored, blank).same


def test_a_flat_image_has_no_features_and_matches_nothing(features_of):
    from PIL import Image

    flat = features_of(Image.new("RGB", (300, 200), (200, 30, 30)))
    assert len(flat.descriptors) == 0 and not np.any(flat.vector)
    assert not verify(flat, flat).same
