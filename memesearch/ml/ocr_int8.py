"""An int8 text detector made from rapidocr's bundled fp32 one, once, on this machine.

Detection is ~40 % of OCR time. Static int8 (QDQ: int8 convolutions with activation ranges
measured beforehand) costs ~30 % less CPU per detection than fp32 with the same word recall
on the rendered memes (bench/bench_ocr.py; docs/BENCHMARKS.md, "Issue 16: index
throughput"). Nothing is downloaded: the ranges are calibrated on sample memes rendered
here with a fixed seed, and the graph is cached in the models folder under a name carrying
the fp32 file's hash, so a new rapidocr model is quantised again. Weights are per-channel
with 7 bits (``REDUCE_RANGE``: exact on CPUs without VNNI, see quantize.py).

Recognition (~55 % of OCR time) has an int8 graph too, on CPUs with VNNI only: its backbone's
later convolutions (Conv.18-53) as static QDQ with 8-bit weights, ranges from the line crops our
engine feeds the recogniser while reading sample memes (~0.79x OCR CPU, ~0.2 points of word
recall below fp32 on the rendered memes). 8-bit weights are what keeps its recall; 7-bit ones
lose more, and 8-bit ones are exact only with VNNI (quantize.py), so other CPUs keep fp32.
"""

from __future__ import annotations

import hashlib
import logging
import tempfile
from pathlib import Path

import numpy as np

from memesearch.ml.onnx_runtime.quantize import REDUCE_RANGE, derive_once
from memesearch.ml.cpu import has_vnni

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
RECOGNIZER_RECIPE = "int8w8-r1"


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
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:12]
    target = models_dir / "ocr" / f"{source.stem}.{digest}.{recipe}.onnx"
    if not target.is_file():
        log.info("quantising the OCR model %s to int8 (once)", source.name)
    return derive_once(target, write)


def quantize_detector(source: Path, target: str, prepare) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        quantize_qdq(source, target, _calibration_inputs(Path(scratch), prepare))


def quantize_recognizer(source: Path, target: str, record) -> None:
    from memesearch.library.decode import load_rgb
    from memesearch.library.samples import render_sample_memes

    with tempfile.TemporaryDirectory() as scratch:
        images = [load_rgb(meme.path, max_megapixels=50) for seed, count in RECOGNIZER_CALIBRATION.items()
                  for meme in render_sample_memes(Path(scratch) / str(seed), count=count, seed=seed)]
    quantize_qdq(source, target, record(images), nodes=RECOGNIZER_NODES, reduce_range=False)


def quantize_qdq(source: Path, target: str, inputs: list[np.ndarray], *, nodes: list[str] | None = None,
                 reduce_range: bool = REDUCE_RANGE) -> None:
    """Write ``target``: the PaddleOCR graph ``source`` (input ``x``) as static int8 QDQ, activation
    ranges from ``inputs``; only ``nodes`` if given (bench/bench_ocr_rec_int8.py tries subsets)."""
    import onnx
    from onnx import version_converter
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    class Inputs(CalibrationDataReader):
        def __init__(self, tensors: list[np.ndarray]) -> None:
            self._tensors = iter(tensors)

        def get_next(self):
            tensor = next(self._tensors, None)
            return None if tensor is None else {"x": tensor}

    with tempfile.TemporaryDirectory() as scratch:
        upgraded, prepared = Path(scratch) / "opset13.onnx", Path(scratch) / "prepared.onnx"
        onnx.save(version_converter.convert_version(onnx.load(str(source)), OPSET), str(upgraded))
        # Batch norms folded into their convolutions first: fewer tensors to quantise (0.9x CPU).
        quant_pre_process(str(upgraded), str(prepared), skip_symbolic_shape=True)
        quantize_static(str(prepared), target, Inputs(inputs), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, per_channel=True,
                        reduce_range=reduce_range, calibrate_method=CalibrationMethod.MinMax, nodes_to_quantize=nodes)


def _calibration_inputs(folder: Path, prepare) -> list[np.ndarray]:
    from memesearch.library.decode import load_rgb
    from memesearch.library.samples import render_sample_memes

    memes = render_sample_memes(folder / "memes", count=CALIBRATION_MEMES, seed=CALIBRATION_SEED)
    return [prepare(load_rgb(meme.path, max_megapixels=50)) for meme in memes]
