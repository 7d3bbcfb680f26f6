"""An int8 text detector made from rapidocr's bundled fp32 one, once, on this machine.

Detection is ~40 % of OCR time. Static int8 (QDQ: int8 convolutions with activation ranges
measured beforehand) costs ~30 % less CPU per detection than fp32 with the same word recall
on the rendered memes (bench/bench_ocr.py; docs/BENCHMARKS.md, "Issue 16: index
throughput"). Nothing is downloaded: the ranges are calibrated on sample memes rendered
here with a fixed seed, and the graph is cached in the models folder under a name carrying
the fp32 file's hash, so a new rapidocr model is quantised again. Weights are per-channel
with 7 bits (``REDUCE_RANGE``: exact on CPUs without VNNI, see quantize.py).

Recognition (~55 % of OCR time) has an int8 graph too, on CPUs with VNNI only: its backbone's
later convolutions (Conv.18-53) as static QDQ with 8-bit weights, activation ranges from the
line crops our engine feeds the recogniser while reading sample memes, each range cut to the
0.01-99.99th percentile of the values seen (plain min/max ranges read up to 1 point worse).
~0.79x OCR CPU; word recall +1.2 to -1.2 points against fp32 on six rendered sets, never below
the code before issue 16 (docs/BENCHMARKS.md, session 14). 8-bit weights are what keeps its
recall (7-bit ones lose more), and they are exact only with VNNI (quantize.py), so other CPUs
keep fp32.
"""

from __future__ import annotations

import json
import logging
import tempfile
from pathlib import Path

import numpy as np

from memesearch.library.hashing import sha256_file
from memesearch.ml.cpu import has_vnni
from memesearch.ml.onnx_runtime.quantize import REDUCE_RANGE, derive_once

log = logging.getLogger(__name__)

#: Sample memes whose detector inputs set the activation ranges (a fixed seed: same graph every time).
CALIBRATION_MEMES = 24
CALIBRATION_SEED = 5
#: Part of the cached file's name: bump it when the recipe below changes, so old graphs are not reused.
RECIPE = 1
#: QDQ with per-channel weight scales needs DequantizeLinear's ``axis`` (opset 13).
OPSET = 13

#: The recogniser's convolutions made int8: Conv.0-53 are its PP-LCNet backbone; the first 18
#: (stem, first stages) and the SVTR neck and CTC head after it stay fp32 (word recall).
RECOGNIZER_NODES = [f"Conv.{i}" for i in range(18, 54)]
#: Sample memes whose line crops set the recogniser's ranges: 30 of each seed, ~200 lines.
RECOGNIZER_CALIBRATION = {5: 30, 7: 30}
#: Ranges leave out the rarest 0.01 % of activations each side: min/max ranges read worse.
RECOGNIZER_PERCENTILE = 99.99
#: In the cached file's name, as RECIPE is for the detector.
RECOGNIZER_RECIPE = "int8w8-p9999-r1"
#: Those ranges, measured once for the recogniser rapidocr bundles (scripts/ocr_rec_ranges.py):
#: making the graph then takes ~2 s instead of ~45 s of calibration on a user's first index.
RECOGNIZER_RANGES = Path(__file__).with_name("ocr_rec_ranges.json")


def int8_detector(source: Path, models_dir: Path, prepare) -> Path:
    """The int8 graph of the detector ``source``, derived once into ``models_dir/ocr``.
    ``prepare(image)`` turns a PIL image into the detector's input, as reading does."""
    return _derive(source, models_dir, f"int8-r{RECIPE}", lambda partial: quantize_detector(source, partial, prepare))


def int8_recognizer(source: Path, models_dir: Path, record) -> Path | None:
    """The int8 graph of the recogniser ``source``, derived once into ``models_dir/ocr``; None on
    CPUs without VNNI. ``record(images)`` returns the recogniser's inputs while ``images`` are
    read (by the fp32 recogniser); it is called only when the graph is made."""
    if not has_vnni():
        return None
    return _derive(source, models_dir, RECOGNIZER_RECIPE, lambda partial: quantize_recognizer(source, partial, record))


def _derive(source: Path, models_dir: Path, recipe: str, write) -> Path:
    digest = sha256_file(source)[:12]
    target = models_dir / "ocr" / f"{source.stem}.{digest}.{recipe}.onnx"
    if not target.is_file():
        log.info("quantising the OCR model %s to int8 (once)", source.name)
    return derive_once(target, write)


def quantize_detector(source: Path, target: str, prepare) -> None:
    images = calibration_images({CALIBRATION_SEED: CALIBRATION_MEMES})
    quantize_qdq(source, target, [prepare(image) for image in images])


def quantize_recognizer(source: Path, target: str, record) -> None:
    """With the stored ranges of this exact graph (RECOGNIZER_RANGES), ~2 s: one sample line only
    feeds quantize_static's own calibration pass, whose values the stored ranges replace (the
    bytes equal those of a full calibration, tests/test_ocr_int8.py). Without them (another
    rapidocr model), the full calibration: ~45 s and ~1 GB once."""
    stored = stored_recognizer_ranges(source)
    if stored is None:
        log.info("no stored activation ranges for %s: calibrating on sample memes (about a minute, once)", source.name)
        inputs = record(calibration_images(RECOGNIZER_CALIBRATION))
    else:
        inputs = record(calibration_images({CALIBRATION_SEED: 1}))[:1]
    quantize_qdq(source, target, inputs, nodes=RECOGNIZER_NODES, reduce_range=False,
                 percentile=RECOGNIZER_PERCENTILE, ranges=stored)


def calibration_images(counts: dict[int, int]) -> list:
    """Rendered sample memes, ``counts`` of each seed, decoded as indexing decodes them."""
    from memesearch.library.decode import load_rgb
    from memesearch.library.samples import render_sample_memes

    with tempfile.TemporaryDirectory() as scratch:
        return [load_rgb(meme.path, max_megapixels=50) for seed, count in counts.items()
                for meme in render_sample_memes(Path(scratch) / str(seed), count=count, seed=seed)]


def recognizer_ranges(source: Path, record) -> dict[str, list[float]]:
    """The activation ranges full calibration gives the recogniser ``source``, as stored in
    RECOGNIZER_RANGES (scripts/ocr_rec_ranges.py writes them)."""
    with tempfile.TemporaryDirectory() as scratch:
        prepared = _prepared(source, Path(scratch))
        found = percentile_ranges(prepared, record(calibration_images(RECOGNIZER_CALIBRATION)),
                                  RECOGNIZER_NODES, RECOGNIZER_PERCENTILE)
    return {name: [float(bounds[0]["rmin"]), float(bounds[0]["rmax"])] for name, bounds in sorted(found.items())}


def stored_recognizer_ranges(source: Path) -> dict | None:
    """RECOGNIZER_RANGES as quantize_static's overrides, if they were measured on this very graph
    with this recipe; else None."""
    try:
        table = json.loads(RECOGNIZER_RANGES.read_text())
    except (OSError, ValueError) as exc:
        log.warning("cannot read the stored OCR activation ranges %s: %s", RECOGNIZER_RANGES, exc)
        return None
    if table.get("source_sha256") != sha256_file(source) or table.get("recipe") != RECOGNIZER_RECIPE:
        return None
    return {name: [{"rmin": np.float32(low), "rmax": np.float32(high)}] for name, (low, high) in table["ranges"].items()}


def quantize_qdq(source: Path, target: str, inputs: list[np.ndarray], *, nodes: list[str] | None = None,
                 reduce_range: bool = REDUCE_RANGE, percentile: float | None = None,
                 ranges: dict | None = None) -> None:
    """Write ``target``: the PaddleOCR graph ``source`` (input ``x``) as static int8 QDQ, activation
    ranges from ``inputs`` (their extremes, or with ``percentile`` that percentile of the values
    around each of ``nodes``) unless ``ranges`` gives them; only ``nodes`` if given
    (bench/bench_ocr_rec_int8.py tries subsets)."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    class Inputs(CalibrationDataReader):
        def __init__(self, tensors: list[np.ndarray]) -> None:
            self._tensors = iter(tensors)

        def get_next(self):
            tensor = next(self._tensors, None)
            return None if tensor is None else {"x": tensor}

    with tempfile.TemporaryDirectory() as scratch:
        prepared = _prepared(source, Path(scratch))
        if ranges is None and percentile:
            ranges = percentile_ranges(prepared, inputs, nodes, percentile)
        quantize_static(str(prepared), target, Inputs(inputs), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        reduce_range=reduce_range, calibrate_method=CalibrationMethod.MinMax, nodes_to_quantize=nodes,
                        extra_options=ranges and {"TensorQuantOverrides": ranges})


def _prepared(source: Path, scratch: Path) -> Path:
    """``source`` at opset 13 with its batch norms folded into the convolutions (fewer tensors to
    quantise: 0.9x CPU), in ``scratch``: the graph quantize_static and the ranges work on."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization.shape_inference import quant_pre_process

    upgraded, prepared = scratch / "opset13.onnx", scratch / "prepared.onnx"
    onnx.save(version_converter.convert_version(onnx.load(str(source)), OPSET), str(upgraded))
    quant_pre_process(str(upgraded), str(prepared), skip_symbolic_shape=True)
    return prepared


def percentile_ranges(model_path: Path, inputs: list[np.ndarray], nodes: list[str], percentile: float) -> dict:
    """Activation ranges of ``nodes``' inputs and outputs that leave out the rarest values: the
    (100 - ``percentile``)-th to ``percentile``-th percentile of what ``inputs`` produce there.
    (onnxruntime's own percentile calibrator needs inputs of one shape; text lines vary in width.)

    Only each side's most extreme values can be those percentiles, so two passes keep memory
    small (all values of ~200 lines: ~5 GB): the first counts the values, the second keeps
    each line's most extreme ones."""
    import onnx

    from memesearch.ml.onnx_runtime.session import onnxruntime

    model = onnx.load(str(model_path))
    chosen = set(nodes)
    names = sorted({name for node in model.graph.node if node.name in chosen for name in (node.input[0], node.output[0])})
    outputs = {output.name for output in model.graph.output}
    model.graph.output.extend(onnx.helper.make_tensor_value_info(name, onnx.TensorProto.FLOAT, None)
                              for name in names if name not in outputs)
    ort = onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])

    def values():
        for tensor in inputs:
            yield from zip(names, (value.ravel() for value in session.run(names, {"x": tensor})))

    counts = dict.fromkeys(names, 0)
    for name, value in values():
        counts[name] += value.size
    # np.percentile's linear rule reads ranks floor(h) and floor(h) + 1, h = (n - 1) * q / 100.
    tails = {name: int((count - 1) * (100 - percentile) / 100) + 2 for name, count in counts.items()}
    lows, highs = {name: [] for name in names}, {name: [] for name in names}
    for name, value in values():
        keep = min(tails[name], value.size)
        lows[name].append(np.partition(value, keep - 1)[:keep].copy())  # not a view of the whole
        highs[name].append(np.partition(value, value.size - keep)[value.size - keep:].copy())
    ranges = {}
    for name in names:
        low = np.sort(np.concatenate(lows[name]))[:tails[name]]
        high = np.sort(np.concatenate(highs[name]))[-tails[name]:]
        low = _percentile(low, 0, counts[name], 100 - percentile)
        high = _percentile(high, counts[name] - len(high), counts[name], percentile)
        ranges[name] = [{"rmin": np.array(min(low, 0.0), dtype=np.float32),
                         "rmax": np.array(max(high, 0.0), dtype=np.float32)}]
    return ranges


def _percentile(part: np.ndarray, first: int, count: int, q: float) -> float:
    """np.percentile(values, q) in float64 of ``count`` values, of which ``part`` holds (sorted)
    those of ranks ``first`` on: the two it interpolates between must be in it."""
    h = (count - 1) * (q / 100)
    below = int(h)
    pair, t = part[below - first:below - first + 2].astype(np.float64), h - below
    if len(pair) == 1:
        return float(pair[0])
    low, high = pair
    return float(low + (high - low) * t if t < 0.5 else high - (high - low) * (1 - t))  # numpy's _lerp
