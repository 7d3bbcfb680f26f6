"""Real OCR (rapidocr + bundled PP-OCRv6 small) on rendered sample memes."""

from __future__ import annotations

import re
import statistics

import numpy as np
import pytest
from PIL import Image, ImageDraw

from memesearch.errors import ModelUnavailableError
from memesearch.library.decode import load_rgb
from memesearch.library.fonts import find_bold_fonts
from memesearch.library.sample_captions import SPACELESS_CAPTION
from memesearch.library.samples import render_sample_memes
from memesearch.ml import ocr
from memesearch.ml.ocr import RapidOcrEngine

MEME_COUNT = 12


def word_set(text: str) -> set[str]:
    return set(re.findall(r"\w+", text.casefold()))


def word_recall(expected: str, read: str) -> float:
    wanted = word_set(expected)
    return len(wanted & word_set(read)) / len(wanted)


@pytest.fixture(scope="module")
def engine():
    engine = RapidOcrEngine(threads=1)
    engine.ensure_loaded()
    return engine


@pytest.fixture(scope="module")
def readings(engine, tmp_path_factory):
    memes = render_sample_memes(tmp_path_factory.mktemp("ocr-memes"), count=MEME_COUNT, seed=0)
    # Decoded as the pipeline does: first frame, alpha flattened on white.
    return [(meme, engine.read(load_rgb(meme.path, max_megapixels=50))) for meme in memes]


def _text_image(size, placements) -> Image.Image:
    image = Image.new("RGB", size, "white")
    draw = ImageDraw.Draw(image)
    font = find_bold_fonts()[0].load(36)
    for (x, y), text in placements:
        draw.text((x, y), text, font=font, fill="black")
    return image


def test_reads_meme_captions(readings):
    recalls = [word_recall(meme.text, result.text) for meme, result in readings if meme.text != SPACELESS_CAPTION]
    assert statistics.mean(recalls) >= 0.8, recalls
    assert min(recalls) >= 0.5, recalls  # no meme is missed outright


def test_reads_the_spaceless_meme_as_one_run(readings):
    (result,) = [result for meme, result in readings if meme.text == SPACELESS_CAPTION]
    assert SPACELESS_CAPTION.replace(" ", "").upper() in result.text.replace(" ", "").upper()


def test_keeps_diacritics(readings):
    foreign = [(meme, result) for meme, result in readings if not meme.text.isascii()]
    assert len(foreign) >= 2
    for meme, result in foreign:
        accented = {word for word in word_set(meme.text) if not word.isascii()}
        assert accented & word_set(result.text), (meme.text, result.text)


def test_result_lines_and_confidences(readings, engine):
    for _, result in readings:
        assert result.text == "\n".join(text for text, _ in result.lines)
        assert all(engine.min_confidence <= confidence <= 1.0 for _, confidence in result.lines)
        assert result.ms > 0


def test_reading_order_is_rows_then_columns(engine):
    image = _text_image((640, 360), [((30, 280), "ALPHA"), ((420, 40), "BETA"), ((30, 44), "GAMMA")])
    assert engine.read(image).text.split("\n") == ["GAMMA", "BETA", "ALPHA"]


def test_images_without_text_read_as_empty(engine):
    gradient = Image.linear_gradient("L").resize((500, 400)).convert("RGB")
    noise = Image.fromarray(np.random.default_rng(0).integers(0, 256, (400, 500, 3), dtype=np.uint8))
    for image in (gradient, noise, Image.new("RGB", (640, 480), (30, 120, 200))):
        assert len(engine.read(image).text.strip()) <= 2


def test_degenerate_sizes_do_not_crash(engine):
    assert engine.read(Image.new("RGB", (1, 1), "red")).text == ""
    assert engine.read(Image.new("RGB", (4000, 50), "white")).text == ""
    assert engine.read(Image.new("RGB", (50, 4000), "white")).text == ""
    tiny = _text_image((64, 20), [])
    assert isinstance(engine.read(tiny).text, str)


def test_reads_a_long_banner(engine):
    caption = "A VERY LONG BANNER THAT RUNS ALONG THE WHOLE WIDTH OF THIS STRIP"
    banner = _text_image((4000, 50), [((10, 4), caption)])
    assert word_recall(caption, engine.read(banner).text) >= 0.8


def test_hands_rapidocr_bgr_pixels(engine, monkeypatch):
    seen = []

    def recorder(array):
        seen.append(array)
        return type("Empty", (), {"boxes": None, "txts": None, "scores": None})()

    monkeypatch.setattr(engine, "_engine", recorder)
    engine.read(Image.new("RGB", (600, 500), (255, 0, 0)))
    (array,) = seen
    assert array.shape == (500, 600, 3) and tuple(array[0, 0]) == (0, 0, 255)


def test_loading_is_silent(capfd):
    RapidOcrEngine(threads=1).read(Image.new("RGB", (300, 200), "white"))
    captured = capfd.readouterr()
    assert captured.out == "" and captured.err == ""


def test_missing_bundled_model_is_a_clear_error(monkeypatch):
    monkeypatch.setattr(ocr, "DET_MODEL_FILE", "PP-OCRv6_det_missing.onnx")
    with pytest.raises(ModelUnavailableError, match="PP-OCRv6_det_missing.onnx"):
        RapidOcrEngine(threads=1).ensure_loaded()


def test_engine_id_names_engine_and_models():
    assert RapidOcrEngine.engine_id == "rapidocr-3/ppocrv6-small"


def test_detector_input_matches_rapidocrs_own_normalisation(engine):
    """The lookup-table normalisation feeds the detector exactly the tensor rapidocr's would."""
    from rapidocr.ch_ppocr_det.utils import DetPreProcess

    text_det = engine._engine.text_det
    rng = np.random.default_rng(0)
    bgr = rng.integers(0, 256, (500, 700, 3), dtype=np.uint8)
    fast = text_det.get_preprocess()(bgr)
    own = DetPreProcess(text_det.limit_side_len, text_det.limit_type, text_det.mean, text_det.std)(bgr)
    assert type(text_det.get_preprocess()).__name__ == "TablePreProcess"
    assert fast.shape == own.shape == (1, 3, 512, 704) and fast.dtype == own.dtype == np.float32
    assert np.array_equal(fast, own)  # bit for bit: the same boxes, the same text


def test_rapidocr_model_catalogue_still_answers_after_the_fast_import():
    """The catalogue read as plain YAML during import still resolves model keys and download URLs."""
    import subprocess
    import sys

    code = (
        "import rapidocr\n"
        "from memesearch.ml.rapidocr_import import rapidocr_class\n"
        "rapidocr_class(rapidocr)\n"
        "from omegaconf import OmegaConf\n"
        "from rapidocr.inference_engine.base import FileInfo, InferSession\n"
        "from rapidocr.utils.typings import EngineType, LangRec, ModelType, OCRVersion, TaskType\n"
        "info = FileInfo(engine_type=EngineType.ONNXRUNTIME, ocr_version=OCRVersion.PPOCRV6,\n"
        "                task_type=TaskType.REC, lang_type=LangRec.CH, model_type=ModelType.SMALL)\n"
        "url = InferSession.get_model_url(info)['model_dir']\n"
        "assert OmegaConf.load.__name__ == 'load' and 'omegaconf' in OmegaConf.load.__module__\n"
        "print(url)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip().endswith("PP-OCRv6_rec_small.onnx")
