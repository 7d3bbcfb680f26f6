"""Template-group fixtures: the real OCR engine (caption boxes are what the features mask)."""

from __future__ import annotations

from pathlib import Path

import pytest
from PIL import Image

from memesearch.templates.features import extract
from memesearch.templates.record import TemplateFeatures


@pytest.fixture(scope="session")
def ocr():
    from memesearch.ml.ocr import RapidOcrEngine

    return RapidOcrEngine(threads=1)


@pytest.fixture(scope="session")
def features_of(ocr):
    """Features of an image the way the index stage computes them: real OCR boxes masked."""

    def compute(image: Image.Image) -> TemplateFeatures:
        image = image.convert("RGB")
        return extract(image, ocr.read(image).boxes)

    return compute


def indexed_template_library(root: Path, models_dir: Path, *, templates: int, variants: int, distractors: int,
                             seed: int, samples: int = 0):
    """(core, rendered template memes): a library of template memes (plus ``samples`` words-on-a-
    background sample memes) under ``root/memes``, indexed by the real pipeline into ``root/data``."""
    from memesearch.library.indexing import run_index
    from memesearch.library.samples import render_sample_memes
    from memesearch.templates.synthetic import render_template_set
    from tests.conftest import make_core

    memes = render_template_set(root / "memes", templates=templates, variants=variants, distractors=distractors, seed=seed)
    if samples:
        render_sample_memes(root / "memes" / "samples", count=samples, seed=7)
    core = make_core(root / "data", models_dir, threads=1)
    core.store.add_folder(str(root / "memes"))
    run_index(core)
    return core, memes
