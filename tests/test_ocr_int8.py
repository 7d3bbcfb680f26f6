"""The int8 text detector and recogniser (memesearch.ml.ocr_int8): derived once from rapidocr's
bundled fp32 graphs into the models folder, the same bytes every time, reading (about) as well as
fp32; the recogniser only on CPUs with VNNI and while the setting allows it; a folder it cannot
write to, a damaged cached graph or a failing quantiser leave OCR on the fp32 graphs with a
logged reason."""

from __future__ import annotations

import logging
import re
import shutil
import statistics
from pathlib import Path

import numpy as np
import onnx
import pytest

import rapidocr
from memesearch.config import Settings
from memesearch.library.decode import load_rgb
from memesearch.library.hashing import sha256_file
from memesearch.library.sample_captions import SPACELESS_CAPTION
from memesearch.library.samples import render_sample_memes
from memesearch.ml import cpu, ocr_int8
from memesearch.ml.ocr import DET_MODEL_FILE, RapidOcrEngine, detector_input
from memesearch.ml.ocr_int8 import quantize_detector


def _recall(expected: str, read: str) -> float:
    wanted = set(re.findall(r"\w+", expected.casefold()))
    return len(wanted & set(re.findall(r"\w+", read.casefold()))) / len(wanted)


@pytest.fixture(scope="module")
def int8(tmp_path_factory):
    models = tmp_path_factory.mktemp("models")
    # Both graphs are derived on any CPU here (VNNI or not, making them is the same); whether
    # int8 recognition reads well is only checked where it runs, on VNNI CPUs.
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ocr_int8, "has_vnni", lambda: True)
        engine = RapidOcrEngine(threads=1, models_dir=models)
        engine.ensure_loaded()
    return engine, models


def _graph(models: Path, kind: str) -> Path:
    [graph] = (models / "ocr").glob(f"PP-OCRv6_{kind}_small.*.onnx")
    return graph


def _models_with_detector(int8, tmp_path) -> Path:
    """A fresh models folder holding only the int8 detector (so tests do not derive it again)."""
    detector = _graph(int8[1], "det")
    (tmp_path / "models" / "ocr").mkdir(parents=True)
    (tmp_path / "models" / "ocr" / detector.name).write_bytes(detector.read_bytes())
    return tmp_path / "models"


def _read_well(engine: RapidOcrEngine, tmp_path: Path, count: int = 12, seed: int = 2) -> float:
    memes = [m for m in render_sample_memes(tmp_path / f"memes{seed}", count=count, seed=seed) if m.text != SPACELESS_CAPTION]
    return statistics.mean(_recall(m.text, engine.read(load_rgb(m.path, max_megapixels=50)).text) for m in memes)


def test_the_detector_is_quantised_once_into_the_models_folder(int8):
    engine, models = int8
    assert engine.detector_dtype == "int8"
    graph = _graph(models, "det")
    ops = {node.op_type for node in onnx.load(str(graph)).graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    written = graph.stat().st_mtime_ns
    again = RapidOcrEngine(threads=1, models_dir=models)
    again.ensure_loaded()
    assert again.detector_dtype == "int8" and graph.stat().st_mtime_ns == written, "reused, not redone"


def test_quantising_is_deterministic(int8, tmp_path):
    _, models = int8
    graph = _graph(models, "det")
    fp32 = Path(rapidocr.__file__).resolve().parent / "models" / DET_MODEL_FILE
    quantize_detector(fp32, str(tmp_path / "again.onnx"), detector_input)
    assert (tmp_path / "again.onnx").read_bytes() == graph.read_bytes()


def test_int8_detection_reads_captions_as_well_as_fp32(int8, tmp_path):
    engine, _ = int8
    fp32 = RapidOcrEngine(threads=1)
    memes = [m for m in render_sample_memes(tmp_path, count=12, seed=2) if m.text != SPACELESS_CAPTION]
    images = [load_rgb(meme.path, max_megapixels=50) for meme in memes]
    with_int8 = statistics.mean(_recall(m.text, engine.read(i).text) for m, i in zip(memes, images))
    with_fp32 = statistics.mean(_recall(m.text, fp32.read(i).text) for m, i in zip(memes, images))
    assert with_int8 >= 0.8 and with_int8 >= with_fp32 - 0.03, (with_int8, with_fp32)


def test_a_models_folder_it_cannot_write_leaves_detection_on_fp32(tmp_path, caplog):
    not_a_folder = tmp_path / "models"
    not_a_folder.write_text("a file where the models folder should be")
    engine = RapidOcrEngine(threads=1, models_dir=not_a_folder)
    with caplog.at_level(logging.WARNING, logger="memesearch.ml.ocr"):
        engine.ensure_loaded()
    assert engine.detector_dtype == "fp32"
    assert any("stays fp32" in record.getMessage() for record in caplog.records)
    memes = render_sample_memes(tmp_path / "memes", count=2, seed=4)
    assert engine.read(load_rgb(memes[0].path, max_megapixels=50)).text


def _two_convs(tmp_path: Path, rng) -> Path:
    from onnx import TensorProto, helper, numpy_helper

    weights = [numpy_helper.from_array(rng.normal(size=(4, channels, 3, 3)).astype(np.float32), f"w{i}")
               for i, channels in enumerate((3, 4))]
    graph = helper.make_graph(
        [helper.make_node("Conv", ["x", "w0"], ["h"], name="Conv.0", pads=[1, 1, 1, 1]),
         helper.make_node("Relu", ["h"], ["r"], name="Relu.0"),
         helper.make_node("Conv", ["r", "w1"], ["y"], name="Conv.1", pads=[1, 1, 1, 1])],
        "two_convs", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 3, 8, None])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4, 8, None])], weights)
    source = tmp_path / "two.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 11)]), str(source))
    return source


def test_percentile_ranges_are_numpys_percentiles_of_all_values(tmp_path):
    from memesearch.ml.ocr_int8 import percentile_ranges

    rng = np.random.default_rng(1)
    lines = [rng.standard_cauchy((1, 3, 8, width)).astype(np.float32) for width in (40, 300, 17, 120)]
    ranges = percentile_ranges(_two_convs(tmp_path, rng), lines, ["Conv.0"], 99.0)
    everything = np.concatenate([line.ravel() for line in lines]).astype(np.float64)
    assert set(ranges) == {"x", "h"}, "the named convolution's input and output"
    [x] = ranges["x"]
    assert (float(x["rmin"]), float(x["rmax"])) == tuple(np.float32(np.percentile(everything, [1.0, 99.0])))
    assert everything.min() < x["rmin"] and x["rmax"] < everything.max(), "the rarest values are left out"


def test_quantize_qdq_leaves_the_convolutions_not_named_in_fp32(tmp_path):
    # bench/bench_ocr_rec_int8.py quantises subsets of the recogniser's backbone this way.
    from memesearch.ml.ocr_int8 import quantize_qdq

    rng = np.random.default_rng(0)
    source = _two_convs(tmp_path, rng)
    lines = [rng.random((1, 3, 8, width), dtype=np.float32) for width in (8, 20, 13)]  # widths vary, as text lines do
    quantize_qdq(source, str(tmp_path / "int8.onnx"), lines, nodes=["Conv.1"])
    quantised = onnx.load(str(tmp_path / "int8.onnx")).graph
    producers = {output: node.op_type for node in quantised.node for output in node.output}
    convs = {node.name: node for node in quantised.node if node.op_type == "Conv"}
    assert producers.get(convs["Conv.1"].input[1]) == "DequantizeLinear"
    assert convs["Conv.0"].input[1] not in producers, "Conv.0 keeps its fp32 weight initializer"


def test_the_recognizer_is_quantised_once_into_the_models_folder(int8, monkeypatch):
    engine, models = int8
    assert engine.recognizer_dtype == "int8"
    graph = _graph(models, "rec")
    convs = {node.name: node for node in onnx.load(str(graph)).graph.node if node.op_type == "Conv"}
    producers = {output: node.op_type for node in onnx.load(str(graph)).graph.node for output in node.output}
    assert producers.get(convs["Conv.53"].input[1]) == "DequantizeLinear", "the backbone's late convolutions are int8"
    assert convs["Conv.0"].input[1] not in producers, "its stem stays fp32"
    written = graph.stat().st_mtime_ns
    monkeypatch.setattr(ocr_int8, "has_vnni", lambda: True)
    monkeypatch.setattr(ocr_int8, "quantize_qdq", lambda *args, **kwargs: pytest.fail("quantised again"))
    again = RapidOcrEngine(threads=1, models_dir=models)
    again.ensure_loaded()
    assert again.recognizer_dtype == "int8" and graph.stat().st_mtime_ns == written, "reused, not redone"


def test_making_the_recognizer_is_deterministic(int8, tmp_path, monkeypatch):
    # Two fresh folders with a smaller calibration set (the recipe is the same, it is only quicker).
    monkeypatch.setattr(ocr_int8, "has_vnni", lambda: True)
    monkeypatch.setattr(ocr_int8, "RECOGNIZER_CALIBRATION", {5: 3, 7: 3})
    graphs = []
    for run in ("first", "second"):
        engine = RapidOcrEngine(threads=1, models_dir=_models_with_detector(int8, tmp_path / run))
        engine.ensure_loaded()
        assert engine.recognizer_dtype == "int8"
        graphs.append(_graph(tmp_path / run / "models", "rec").read_bytes())
    assert graphs[0] == graphs[1]


@pytest.mark.skipif(not cpu.has_vnni(), reason="int8 recognition runs only on CPUs with VNNI (this one has none)")
def test_int8_recognition_reads_captions_about_as_well_as_fp32(int8, tmp_path):
    engine = int8[0]  # int8 detection and recognition; int8 texts may differ a little between CPUs
    with_int8, with_fp32 = _read_well(engine, tmp_path), _read_well(RapidOcrEngine(threads=1), tmp_path)
    assert with_int8 >= 0.8 and with_int8 >= with_fp32 - 0.03, (with_int8, with_fp32)


def test_cpus_without_vnni_keep_fp32_recognition(int8, tmp_path, monkeypatch):
    monkeypatch.setattr(cpu, "cpu_flags", lambda: {"avx2", "fma", "avx512f"})
    models = _models_with_detector(int8, tmp_path)
    engine = RapidOcrEngine(threads=1, models_dir=models)
    engine.ensure_loaded()
    assert (engine.detector_dtype, engine.recognizer_dtype) == ("int8", "fp32")
    assert not list((models / "ocr").glob("PP-OCRv6_rec_small.*")), "nothing derived"


def test_the_setting_turns_int8_recognition_off_in_the_app_and_its_ocr_workers(int8, tmp_path, monkeypatch):
    from memesearch.app import Core
    from memesearch.library.scanner import scan_folder
    from memesearch.ml.fake import FakeEmbedder
    from memesearch.ocr_workers import MIN_MEMES_FOR_WORKERS
    from memesearch.pipeline import Pipeline
    from memesearch.store.sqlite import SqliteStore

    monkeypatch.setattr(ocr_int8, "has_vnni", lambda: True)
    monkeypatch.setenv("MEMESEARCH_OCR_INT8_RECOGNITION", "false")
    settings = Settings(home=tmp_path / "data", ocr_workers=2)
    _models_with_detector(int8, tmp_path)
    shutil.copytree(tmp_path / "models", settings.models_dir)
    engine = Core(settings).ocr
    engine.ensure_loaded()
    assert (engine.detector_dtype, engine.recognizer_dtype) == ("int8", "fp32")
    # The OCR worker processes get the setting too (there has_vnni is this CPU's own answer).
    render_sample_memes(tmp_path / "memes", count=MIN_MEMES_FOR_WORKERS, seed=6)
    store = SqliteStore(tmp_path / "store.db")
    store.add_folder(str(tmp_path / "memes"))
    scan_folder(store, store.list_folders()[0], settings)
    report = Pipeline(store, settings, ocr=engine, embedder=FakeEmbedder()).run_ocr()
    assert not report.failed
    assert not list((settings.models_dir / "ocr").glob("PP-OCRv6_rec_small.*")), "nothing derived anywhere"


def _falls_back(engine: RapidOcrEngine, tmp_path: Path, caplog, reason: str) -> None:
    with caplog.at_level(logging.WARNING, logger="memesearch.ml.ocr"):
        engine.ensure_loaded()
    assert engine.recognizer_dtype == "fp32"
    assert any("recognition stays fp32" in r.getMessage() and reason in r.getMessage() for r in caplog.records), caplog.text
    assert _read_well(engine, tmp_path, count=4, seed=4) >= 0.8


def test_a_damaged_cached_recognizer_leaves_recognition_on_fp32(int8, tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(ocr_int8, "has_vnni", lambda: True)
    models = _models_with_detector(int8, tmp_path)
    (models / "ocr" / _graph(int8[1], "rec").name).write_bytes(b"half a graph")
    _falls_back(RapidOcrEngine(threads=1, models_dir=models), tmp_path, caplog, "cannot open")


def test_a_failing_quantiser_leaves_recognition_on_fp32(int8, tmp_path, monkeypatch, caplog):
    def broken(*args, **kwargs):
        raise RuntimeError("quantiser bug")

    monkeypatch.setattr(ocr_int8, "has_vnni", lambda: True)
    monkeypatch.setattr(ocr_int8, "RECOGNIZER_CALIBRATION", {5: 2})
    monkeypatch.setattr(ocr_int8, "quantize_qdq", broken)
    models = _models_with_detector(int8, tmp_path)
    _falls_back(RapidOcrEngine(threads=1, models_dir=models), tmp_path, caplog, "quantiser bug")
    assert not list((models / "ocr").glob("PP-OCRv6_rec_small.*.onnx")), "no half-written graph left"


def _recorder(engine_models: Path, calls: list):
    """A fp32-recognition engine (behind the int8 detector) whose recorded inputs feed ``record``."""
    from memesearch.ml.ocr import recognizer_inputs

    engine = RapidOcrEngine(threads=1, models_dir=engine_models, int8_recognition=False)
    engine.ensure_loaded()

    def record(images):
        calls.append(len(images))
        return recognizer_inputs(engine, images)

    return record


def test_the_stored_ranges_are_what_calibration_measures(int8):
    """ocr_rec_ranges.json holds the ranges of the bundled recogniser as the full calibration
    measures them now (scripts/ocr_rec_ranges.py made it; fp32 rounding may differ by CPU)."""
    import json

    from memesearch.ml.ocr import bundled_models

    source = bundled_models()[1]
    table = json.loads(ocr_int8.RECOGNIZER_RANGES.read_text())
    assert table["source_sha256"] == sha256_file(source), "rapidocr's recogniser changed: run scripts/ocr_rec_ranges.py"
    assert table["recipe"] == ocr_int8.RECOGNIZER_RECIPE
    measured = ocr_int8.recognizer_ranges(source, _recorder(int8[1], []))
    assert measured.keys() == table["ranges"].keys()
    np.testing.assert_allclose([measured[name] for name in sorted(measured)],
                               [table["ranges"][name] for name in sorted(measured)], rtol=1e-4, atol=1e-6)


def test_stored_ranges_make_the_graph_from_one_line_and_stale_ones_are_not_used(int8, tmp_path, monkeypatch):
    import json

    from memesearch.ml.ocr import bundled_models

    source = bundled_models()[1]
    calls: list[int] = []
    record = _recorder(int8[1], calls)
    ocr_int8.quantize_recognizer(source, str(tmp_path / "stored.onnx"), record)
    assert calls == [1], "with stored ranges one sample meme is read"
    assert (tmp_path / "stored.onnx").read_bytes() == _graph(int8[1], "rec").read_bytes(), "the graph the app made"

    # A table of another graph (rapidocr updated its model): calibration runs on the samples.
    stale = json.loads(ocr_int8.RECOGNIZER_RANGES.read_text()) | {"source_sha256": "0" * 64}
    (tmp_path / "stale.json").write_text(json.dumps(stale))
    monkeypatch.setattr(ocr_int8, "RECOGNIZER_RANGES", tmp_path / "stale.json")
    monkeypatch.setattr(ocr_int8, "RECOGNIZER_CALIBRATION", {5: 2, 7: 2})
    calls.clear()
    ocr_int8.quantize_recognizer(source, str(tmp_path / "calibrated.onnx"), record)
    assert calls == [4], "the calibration set was read"
    assert (tmp_path / "calibrated.onnx").read_bytes() != (tmp_path / "stored.onnx").read_bytes()
