"""Template-group fixtures: the real OCR engine (caption boxes are what the features mask)."""

from __future__ import annotations

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
