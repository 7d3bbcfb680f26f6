"""OCR with rapidocr 3.x and the PP-OCRv6 small models that ship inside its wheel.

rapidocr downloads any model it does not find, so we pin both model paths to
the bundled files: an offline machine then either reads text or fails loudly
here, never by trying the network in the middle of indexing.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from memesearch.errors import ModelUnavailableError, require
from memesearch.ml.base import OcrEngine, OcrResult
from memesearch.ml.onnx_runtime.session import default_threads, onnxruntime
from memesearch.ml.rapidocr_import import rapidocr_class
from memesearch.ml.rapidocr_sessions import use_our_spin_mode

log = logging.getLogger(__name__)

DET_MODEL_FILE = "PP-OCRv6_det_small.onnx"
REC_MODEL_FILE = "PP-OCRv6_rec_small.onnx"

#: Images are shrunk so their longest side is at most this (rapidocr's own cap too);
#: meme text stays legible and detection time stays bounded.
MAX_SIDE = 2000
#: Images whose long side is under UPSCALE_BELOW are enlarged to UPSCALE_TO: small
#: memes carry small text, which both models read better enlarged (+2 points of
#: word recall on half-size samples); larger ones gain nothing for 30% more time.
UPSCALE_BELOW = 480
UPSCALE_TO = 640
#: rapidocr's detector defaults to enlarging every image until its *short* side is
#: 736 px (about 1000x736 for a typical meme). Capping the *long* side at 960
#: instead halves OCR time on memes with the same word recall on our samples.
DET_LIMIT_SIDE = 960
#: rapidocr's detector normalisation (config.yaml), repeated for int8 calibration.
DET_MEAN = DET_STD = (0.5, 0.5, 0.5)
#: Text detection needs some room around glyphs; smaller images are padded up to this.
#: (Very flat banners need nothing special: rapidocr pads them vertically itself.)
MIN_SIDE = 32
#: rapidocr recognises text lines in batches of 6, each padded to the widest line of its
#: batch. One line at a time reads better (word recall 0.970 -> 0.987 on the rendered
#: samples: padding blurs the short lines) and costs ~20% less CPU (bench/bench_index.py).
REC_BATCH = 1
#: rapidocr pads every line to at least 320 px wide (its recogniser's training width); a
#: short word is then mostly padding. Padding only up to a square costs ~8% less CPU per
#: meme and reads better (word recall 0.982 -> 0.992 and 0.911 -> 0.929 on two rendered sets).
REC_HEIGHT = 48
REC_MIN_WIDTH = 48


@dataclass(frozen=True)
class _Line:
    text: str
    confidence: float
    top: float
    bottom: float
    left: float
    right: float


class RapidOcrEngine(OcrEngine):
    """PP-OCRv6 small detection + recognition through rapidocr on onnxruntime (CPU)."""

    engine_id = "rapidocr-3/ppocrv6-small"
    backend = "onnx"

    def __init__(self, *, threads: int | None = None, min_confidence: float = 0.5,
                 models_dir: Path | None = None, int8_recognition: bool = True) -> None:
        """With ``models_dir``, text detection runs an int8 graph derived there once
        (memesearch.ml.ocr_int8), and so does recognition on CPUs with VNNI unless
        ``int8_recognition`` is off; without it, or if that fails, the bundled fp32 ones."""
        super().__init__()
        self.threads = default_threads() if threads is None else threads
        self.min_confidence = min_confidence
        self.models_dir = models_dir
        self.int8_recognition = int8_recognition
        self.detector_dtype = self.recognizer_dtype = "fp32"
        self._engine = None

    def _load(self) -> None:
        det_path, rec_path = bundled_models()
        det_path = self._detector(det_path)
        rec_int8 = self._recognizer(det_path, rec_path)
        if rec_int8 is not None:
            try:
                self._engine = self._open(det_path, rec_int8)
                self.recognizer_dtype = "int8"
                return
            except ModelUnavailableError as exc:  # a damaged cached graph: fp32 still reads
                log.warning("OCR recognition stays fp32: cannot open %s (delete it to make it again): %s",
                            rec_int8, exc)
        self._engine = self._open(det_path, rec_path)

    def _open(self, det_path: Path, rec_path: Path):
        """A started rapidocr engine with these two graphs (a word read already)."""
        rapidocr = require("rapidocr", extra="ocr", purpose="Reading text in images")
        params = {
            # rapidocr logs every model load at INFO and warns on each image without
            # text; both are expected here, so only real errors get through.
            "Global.log_level": "error",
            # Caption text is upright; the angle classifier costs time and can flip lines.
            "Global.use_cls": False,
            "Global.text_score": 0.0,  # we filter by min_confidence ourselves
            "Det.model_path": str(det_path),
            "Det.limit_type": "max",
            "Det.limit_side_len": DET_LIMIT_SIDE,
            "Rec.model_path": str(rec_path),
            "Rec.rec_batch_num": REC_BATCH,
            "Rec.rec_img_shape": [3, REC_HEIGHT, REC_MIN_WIDTH],
            # rapidocr turns onnxruntime's memory arena off; reusing buffers between images
            # saves ~10% CPU per meme for a few MB more resident memory.
            "EngineConfig.onnxruntime.enable_cpu_mem_arena": True,
            # rapidocr: -1 means onnxruntime's default (all cores); ours is 0 for that.
            "EngineConfig.onnxruntime.intra_op_num_threads": self.threads or -1,
            "EngineConfig.onnxruntime.inter_op_num_threads": 1,
        }
        onnxruntime()  # rapidocr opens its own sessions: telemetry off first
        try:
            engine_class = rapidocr_class(rapidocr)
            use_our_spin_mode()  # after rapidocr_class: it imports rapidocr's engines its own way
            engine = engine_class(params=params)
            # rapidocr opens each session on first use, and the recogniser only once
            # something was detected: read a word now, so that a broken model fails
            # at load time and the first real read is not slow.
            engine(_warm_up_image())
            _use_fast_detector_input(engine.text_det)  # the detector exists from the first read on
        except Exception as exc:  # rapidocr raises plain ValueError/FileNotFoundError/ORT errors
            raise ModelUnavailableError(f"cannot start rapidocr: {exc}") from exc
        return engine

    def _detector(self, fp32: Path) -> Path:
        if self.models_dir is None:
            return fp32
        from memesearch.ml.ocr_int8 import int8_detector

        try:
            path = int8_detector(fp32, Path(self.models_dir), detector_input)
        except Exception as exc:  # noqa: BLE001 - a read-only folder, an ORT quantiser bug: fp32 still reads
            log.warning("OCR detection stays fp32: cannot make its int8 graph in %s: %s", self.models_dir, exc)
            return fp32
        self.detector_dtype = "int8"
        return path

    def _recognizer(self, det_path: Path, fp32: Path) -> Path | None:
        """The int8 recogniser, or None. Derived on first use (memesearch.ml.ocr_int8): ``record``
        reads sample memes with the fp32 recogniser behind ``det_path`` and hands back its inputs."""
        if self.models_dir is None or not self.int8_recognition:
            return None
        from memesearch.ml.ocr_int8 import int8_recognizer

        def record(images) -> list[np.ndarray]:
            self._engine = self._open(det_path, fp32)
            return recognizer_inputs(self, images)

        try:
            return int8_recognizer(fp32, Path(self.models_dir), record)
        except Exception as exc:  # noqa: BLE001 - as for the detector: fp32 still reads
            log.warning("OCR recognition stays fp32: cannot make its int8 graph in %s: %s", self.models_dir, exc)
            return None

    def _read(self, image: Image.Image) -> OcrResult:
        fitted, scale = _fit_size(image)
        lines = self._detect_lines(fitted, scale)
        ordered = _reading_order([line for line in lines if line.confidence >= self.min_confidence])
        width, height = image.size
        return OcrResult(
            text="\n".join(line.text for line in ordered),
            lines=[(line.text, line.confidence) for line in ordered],
            boxes=[
                (line.left / width, line.top / height, line.right / width, line.bottom / height)
                for line in ordered
            ],
        )

    def _detect_lines(self, image: Image.Image, scale: float) -> list[_Line]:
        # rapidocr treats numpy input as OpenCV BGR; PIL gives RGB, so swap channels
        # (cvtColor: one SIMD pass, ~40x cheaper than copying a reversed numpy view).
        bgr = cv2.cvtColor(np.asarray(image), cv2.COLOR_RGB2BGR)
        output = self._engine(bgr)
        if output.boxes is None or output.txts is None or len(output.txts) == 0:
            return []
        found = []
        for box, text, score in zip(output.boxes, output.txts, output.scores):
            text = text.strip()
            if not text:
                continue
            ys, xs = box[:, 1], box[:, 0]
            found.append(
                _Line(
                    text=text,
                    confidence=float(score),
                    top=float(ys.min()) / scale,
                    bottom=float(ys.max()) / scale,
                    left=float(xs.min()) / scale,
                    right=float(xs.max()) / scale,
                )
            )
        return found


def detector_input(image: Image.Image) -> np.ndarray:
    """The tensor rapidocr's detector gets for ``image`` (int8 calibration feeds it these)."""
    from rapidocr.ch_ppocr_det.utils import DetPreProcess

    fitted, _ = _fit_size(image.convert("RGB"))
    bgr = np.ascontiguousarray(np.asarray(fitted)[:, :, ::-1])
    return DetPreProcess(DET_LIMIT_SIDE, "max", DET_MEAN, DET_STD)(bgr)


def bundled_models() -> tuple[Path, Path]:
    """The fp32 detector and recogniser inside the rapidocr wheel."""
    rapidocr = require("rapidocr", extra="ocr", purpose="Reading text in images")
    model_dir = Path(rapidocr.__file__).resolve().parent / "models"
    paths = model_dir / DET_MODEL_FILE, model_dir / REC_MODEL_FILE
    for path in paths:
        if not path.is_file():
            raise ModelUnavailableError(
                f"the OCR model {path.name} is missing from the rapidocr package ({model_dir})",
                hint="reinstall rapidocr 3.x (its wheel bundles the PP-OCRv6 small models)",
            )
    return paths


def recognizer_inputs(engine: RapidOcrEngine, images) -> list[np.ndarray]:
    """The tensors ``engine``'s recogniser gets while it reads ``images`` (one text line each):
    int8 calibration and bench/bench_ocr_rec_int8.py record them."""
    text_rec, seen = engine._engine.text_rec, []
    session = text_rec.session

    class Recording:
        def __getattr__(self, name):
            return getattr(session, name)

        def __call__(self, tensor):
            seen.append(tensor.copy())
            return session(tensor)

    text_rec.session = Recording()
    try:
        for image in images:
            engine._read(image.convert("RGB"))
    finally:
        text_rec.session = session
    return seen


def _use_fast_detector_input(text_det) -> None:
    """Make rapidocr's detector normalise its input through a 256-entry lookup table.

    Its own DetPreProcess normalises every pixel in float64 numpy, then transposes and
    casts: ~11 ms CPU for a 576 x 576 meme. A pixel has 256 possible values per channel, so
    the table holds rapidocr's own normalisation of each (the same arithmetic: bit-identical
    tensors, the same text) and ``cv2.LUT`` applies it in ~1.5 ms with the transpose.
    rapidocr builds a DetPreProcess per image through ``get_preprocess``: that is what we
    replace; the resize stays rapidocr's own.
    """
    from rapidocr.ch_ppocr_det.utils import DetPreProcess

    make = text_det.get_preprocess
    levels = np.repeat(np.arange(256, dtype=np.uint8).reshape(1, 256, 1), 3, axis=2)
    table = make().normalize(levels).astype(np.float32)  # (1, 256, 3): one entry per value and channel

    class TablePreProcess(DetPreProcess):
        def __call__(self, img: np.ndarray) -> np.ndarray | None:
            resized = self.resize(img)
            if resized is None:
                return None
            normalised = cv2.LUT(resized, table)  # HWC float32
            return np.ascontiguousarray(normalised.transpose(2, 0, 1))[np.newaxis]

    text_det.get_preprocess = lambda: TablePreProcess(text_det.limit_side_len, text_det.limit_type,
                                                      text_det.mean, text_det.std)


def _warm_up_image() -> np.ndarray:
    image = Image.new("RGB", (160, 64), "white")
    ImageDraw.Draw(image).text((12, 12), "WARM UP", font=ImageFont.load_default(size=28), fill="black")
    return np.asarray(image)  # black on white: the same in RGB and BGR


def _fit_size(image: Image.Image) -> tuple[Image.Image, float]:
    """Bring the long side to at most MAX_SIDE, enlarge small images, pad tiny ones.

    Returns the image to read and the factor it was scaled by.
    """
    width, height = image.size
    longest = max(width, height)
    scale = min(1.0, MAX_SIDE / longest) if longest >= UPSCALE_BELOW else UPSCALE_TO / longest
    if scale > 1.0 and min(width, height) * scale < MIN_SIDE:
        scale = 1.0  # a sliver (or a dot) gains nothing from enlarging; padding is enough
    if scale != 1.0:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        resample = Image.Resampling.BICUBIC if scale > 1.0 else Image.Resampling.LANCZOS
        image = image.resize(size, resample, reducing_gap=3.0)  # fast for huge inputs
    return _pad_to_min(image), scale


def _pad_to_min(image: Image.Image) -> Image.Image:
    """Pad tiny images with their corner colour so the detector has a margin to work with."""
    width, height = image.size
    if width >= MIN_SIDE and height >= MIN_SIDE:
        return image
    canvas = Image.new("RGB", (max(width, MIN_SIDE), max(height, MIN_SIDE)), image.getpixel((0, 0)))
    canvas.paste(image, (0, 0))
    return canvas


def _reading_order(lines: list[_Line]) -> list[_Line]:
    """Top-to-bottom rows, left-to-right within a row.

    Two boxes share a row when their vertical extents overlap by more than half
    of the shorter one; otherwise small height jitter would reorder words.
    """
    rows: list[list[_Line]] = []
    for line in sorted(lines, key=lambda item: (item.top, item.left)):
        for row in rows:
            anchor = row[0]
            overlap = min(anchor.bottom, line.bottom) - max(anchor.top, line.top)
            shorter = min(anchor.bottom - anchor.top, line.bottom - line.top)
            if shorter > 0 and overlap > shorter / 2:
                row.append(line)
                break
        else:
            rows.append([line])
    return [line for row in rows for line in sorted(row, key=lambda item: item.left)]
