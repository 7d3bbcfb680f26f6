"""The rendered sample memes: deterministic, in every promised format, with distinct captions."""

from __future__ import annotations

import hashlib
import random
import re
from collections import Counter

import numpy as np
import pytest
from PIL import Image, ImageChops

from memesearch.library import fonts, samples
from memesearch.library.sample_captions import ENGLISH_CAPTIONS, FOREIGN_CAPTIONS, SPACELESS_CAPTION
from memesearch.library.samples import render_sample_memes

COUNT = 60


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    return render_sample_memes(tmp_path_factory.mktemp("samples"), count=COUNT, seed=0)


def _digests(memes) -> list[tuple[str, str]]:
    return [(meme.path.name, hashlib.sha256(meme.path.read_bytes()).hexdigest()) for meme in memes]


def _words(text: str) -> list[str]:
    return re.findall(r"\w+", text.casefold())


def test_same_seed_gives_the_same_bytes(tmp_path):
    first = render_sample_memes(tmp_path / "a", count=12, seed=5)
    second = render_sample_memes(tmp_path / "b", count=12, seed=5)
    assert _digests(first) == _digests(second)
    assert [(m.text, m.template, m.format) for m in first] == [(m.text, m.template, m.format) for m in second]


def test_another_seed_gives_other_memes(tmp_path):
    first = render_sample_memes(tmp_path / "a", count=12, seed=5)
    other = render_sample_memes(tmp_path / "b", count=12, seed=6)
    assert {digest for _, digest in _digests(first)}.isdisjoint(digest for _, digest in _digests(other))
    assert [m.text for m in first] != [m.text for m in other]


def test_count_and_format_mix(rendered):
    assert len(rendered) == COUNT
    assert all(meme.path.is_file() for meme in rendered)
    kinds = Counter("png-alpha" if m.has_alpha else m.format for m in rendered)
    assert kinds == {"png": 24, "jpeg": 12, "webp": 12, "gif": 6, "png-alpha": 6}
    for meme in rendered:
        with Image.open(meme.path) as image:
            assert image.format.lower() == meme.format
            assert 480 <= image.width <= 640


def test_gifs_are_animated_with_the_caption_on_the_first_frame(rendered):
    gifs = [meme for meme in rendered if meme.format == "gif"]
    assert gifs and all(meme.animated for meme in gifs)
    assert not any(meme.animated for meme in rendered if meme.format != "gif")
    for meme in gifs:
        with Image.open(meme.path) as image:
            assert image.is_animated and image.n_frames >= 3
            image.seek(0)
            first = image.convert("RGB")
            image.seek(1)
            second = image.convert("RGB")
        assert ImageChops.difference(first, second).getbbox() is not None
        # The caption's white letters are in the first frame.
        assert (np.asarray(first) == 255).all(axis=2).sum() > 500


def test_alpha_pngs_need_flattening(rendered):
    stickers = [meme for meme in rendered if meme.has_alpha]
    assert stickers
    for meme in stickers:
        with Image.open(meme.path) as image:
            assert image.mode == "RGBA"
            rgba = np.asarray(image)
        alpha = rgba[:, :, 3]
        assert (alpha == 0).mean() > 0.05 and (alpha == 255).mean() > 0.4
        assert ((alpha > 0) & (alpha < 255)).any()  # a half-transparent rim
        # Hidden colours under the transparent parts are not white: dropping
        # alpha instead of flattening on white would show them.
        hidden = rgba[alpha == 0][:, :3]
        assert (hidden != 255).any(axis=1).mean() > 0.5


def test_texts_are_distinct_and_match_the_captions(rendered):
    texts = [meme.text for meme in rendered]
    assert len(set(texts)) == len(texts)
    known = {" ".join(_words(caption)) for caption in [*ENGLISH_CAPTIONS, *FOREIGN_CAPTIONS, SPACELESS_CAPTION]}
    assert all(" ".join(_words(text)) in known for text in texts)
    assert texts.count(SPACELESS_CAPTION) == 1
    assert sum(1 for text in texts if not text.isascii()) >= 6
    shouted = sum(1 for meme in rendered if meme.text == meme.text.upper())
    assert COUNT * 0.6 < shouted < COUNT
    assert {"drake-style"} <= {meme.template for meme in rendered}
    assert any(meme.template.startswith("three-box") for meme in rendered)


def test_caption_pool_identifies_each_meme_by_three_words():
    captions = [*ENGLISH_CAPTIONS, *FOREIGN_CAPTIONS, SPACELESS_CAPTION]
    assert len(captions) >= 100 and len(set(captions)) == len(captions)
    assert all(4 <= len(caption.split()) <= 10 for caption in captions)
    owners = Counter()
    for caption in captions:
        words = _words(caption)
        owners.update({tuple(words[i : i + 3]) for i in range(len(words) - 2)})
    assert max(owners.values()) == 1


def test_more_memes_than_captions_still_have_distinct_texts():
    captions = samples._pick_captions(300, random.Random(0))
    assert len(set(captions)) == 300
    assert captions[samples.SPACELESS_INDEX] == SPACELESS_CAPTION


def test_renders_without_any_installed_font(tmp_path, monkeypatch):
    fallback = fonts.find_bold_fonts(roots=[tmp_path / "no-fonts-here"])
    assert fallback == [fonts.FontChoice(fonts.PILLOW_DEFAULT, None)]
    monkeypatch.setattr(samples, "find_bold_fonts", lambda: fallback)
    memes = render_sample_memes(tmp_path / "out", count=4, seed=1)
    for meme in memes:
        with Image.open(meme.path) as image:
            image.load()
            assert image.width >= 480


def test_installed_fonts_load_and_render():
    for choice in fonts.find_bold_fonts():
        font = choice.load(40)
        assert font.getlength("ÄBC ÇÃO") > 60
