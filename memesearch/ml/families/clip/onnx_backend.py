"""CLIP on ONNX Runtime: Immich's two-graph layout, no torch.

``visual/model.onnx`` maps a preprocessed image to its embedding and ``textual/model.onnx``
maps 77 token ids to theirs, in the same space. Each graph is opened on first use, so a
search process that only embeds queries never loads the (larger) image tower.

Images and texts run one per call: the int8 graphs quantise activations per tensor, so a
batch would make an image's vector depend on its batch neighbours, and Immich's graphs
have a fixed batch of 1 anyway. Immich publishes fp32 only; ``dtype="int8"`` quantises the
fp32 graphs once (``*_int8.onnx`` next to them, written atomically) and reuses them.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from memesearch.errors import InvalidInputError, ModelUnavailableError
from memesearch.ml.base import LazyModel
from memesearch.ml.families.clip.preprocess import PREPROCESS_FILE, ImageSettings, preprocess
from memesearch.ml.families.clip.tokenizer import DEFAULT_CONTEXT_LENGTH, ClipTokenizer
from memesearch.ml.onnx_runtime.quantize import derive_once
from memesearch.ml.onnx_runtime.session import open_session

log = logging.getLogger(__name__)

CONFIG_FILE = "config.json"
TOWERS = ("visual", "textual")
DTYPES = ("fp32", "int8")
TEXT_FILES = ("textual/tokenizer.json", "textual/tokenizer_config.json")


def onnx_file(tower: str, dtype: str) -> str:
    return f"{tower}/model.onnx" if dtype == "fp32" else f"{tower}/model_{dtype}.onnx"


def required_files(dtype: str) -> list[str]:
    """What `models pull` fetches. Both dtypes need the published fp32 graphs: int8 is derived."""
    if dtype not in DTYPES:
        raise ModelUnavailableError(f"CLIP models come as {' or '.join(DTYPES)}, not {dtype!r}")
    return [CONFIG_FILE, onnx_file("visual", "fp32"), PREPROCESS_FILE, onnx_file("textual", "fp32"), *TEXT_FILES]


def quantize_file(source: Path, target: Path) -> Path:
    """Dynamic int8 MatMuls (7-bit weights: ml/onnx_runtime/quantize.py), the patch embedding
    written as one more MatMul first (clip/patch_matmul.py); written atomically."""
    from memesearch.ml.onnx_runtime.quantize import write_atomically

    return write_atomically(target, lambda partial: _quantize_quietly(source, partial))


def _quantize_quietly(source: Path, target: str) -> None:
    import onnx

    from memesearch.ml.families.clip.patch_matmul import patch_convs_to_matmuls
    from memesearch.ml.onnx_runtime.quantize import quantize_matmuls

    rewritten = Path(target + ".fp32")  # next to the partial file, removed with it
    root = logging.getLogger()
    root.addFilter(_quantizer_advice)
    try:
        model = onnx.load(str(source))
        if patch_convs_to_matmuls(model):
            onnx.save(model, str(rewritten))
            source = rewritten
        del model
        quantize_matmuls(source, target)
    finally:
        root.removeFilter(_quantizer_advice)
        rewritten.unlink(missing_ok=True)


def _quantizer_advice(record: logging.LogRecord) -> bool:
    """Drop the quantiser's 'consider pre-processing' advice (meant for static quantisation)."""
    return "pre-processing before quantization" not in record.getMessage()


def ensure_int8(model_dir: Path, tower: str) -> Path:
    """The int8 graph of ``tower``, quantised from fp32 the first time (one process at a time)."""
    target = model_dir / onnx_file(tower, "int8")
    if target.is_file():
        return target
    source = model_dir / onnx_file(tower, "fp32")
    if not source.is_file():
        raise ModelUnavailableError(f"ONNX file not found: {source}", hint=f"memesearch models pull {model_dir.name}")
    try:
        log.info("quantising %s to int8 (once)", source)
        derive_once(target, lambda partial: _quantize_quietly(source, partial))  # one process at a time
    except OSError as exc:  # a read-only models folder
        raise ModelUnavailableError(
            f"cannot write the int8 graph {target}: {exc}",
            hint="make the models folder writable once, or use the fp32 files (--dtype fp32)",
        ) from exc
    except Exception as exc:  # a truncated or foreign graph
        raise ModelUnavailableError(
            f"cannot quantise {source} to int8: {exc}",
            hint="download the model again with `memesearch models pull`, or use --dtype fp32",
        ) from exc
    return target


def _model_config(model_dir: Path) -> dict:
    path = model_dir / CONFIG_FILE
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
        if not isinstance(config, dict):
            raise ValueError("not a JSON object")
        return config
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(f"cannot read the CLIP config {path}: {exc}",
                                    hint="download the model again with `memesearch models pull`") from exc


def _normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


class _Tower:
    """One graph: its session, input name and input dtype, opened on first use."""

    def __init__(self, path_of, threads: int | None) -> None:
        self._path_of = path_of
        self._threads = threads
        self._lock = threading.Lock()
        self._session = None

    def run(self, batch: np.ndarray) -> np.ndarray:
        with self._lock:
            if self._session is None:
                self._session = open_session(self._path_of(), threads=self._threads, low_memory=True)
                graph_input = self._session.get_inputs()[0]
                self._input = graph_input.name
                self._int64 = graph_input.type == "tensor(int64)"
        if self._int64:
            batch = batch.astype(np.int64)
        return self._session.run(None, {self._input: batch})[0]

    @property
    def loaded(self) -> bool:
        return self._session is not None


class ClipOnnxEmbedder(LazyModel):
    """Image and text embeddings of one CLIP model folder (Immich layout)."""

    backend = "onnx"

    def __init__(self, model_dir: Path, *, dtype: str = "fp32", threads: int | None = None) -> None:
        super().__init__()
        if dtype not in DTYPES:
            raise ModelUnavailableError(f"CLIP on ONNX runs {' or '.join(DTYPES)}, not {dtype!r}")
        self.model_dir = Path(model_dir)
        self.dtype = dtype
        self.dim = 0
        self.visual = _Tower(lambda: self._graph("visual"), threads)
        self.textual = _Tower(lambda: self._graph("textual"), threads)

    def _graph(self, tower: str) -> Path:
        if self.dtype == "int8":
            return ensure_int8(self.model_dir, tower)
        return self.model_dir / onnx_file(tower, "fp32")

    def _load(self) -> None:
        """Settings and tokenizer (cheap); the graphs open on first use."""
        config = _model_config(self.model_dir)
        self.dim = int(config.get("embed_dim", 0))
        context = int(config.get("text_cfg", {}).get("context_length", DEFAULT_CONTEXT_LENGTH))
        self.image_settings = ImageSettings.from_file(self.model_dir / PREPROCESS_FILE)
        self.tokenizer = ClipTokenizer.from_dir(self.model_dir / "textual", context_length=context)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        """L2-normalised float32 vectors, shape (len(images), dim)."""
        self.ensure_loaded()
        rows = [self.visual.run(preprocess(image, self.image_settings)[None])[0] for image in images]
        return self._stack(rows)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 vectors, shape (len(texts), dim)."""
        self.ensure_loaded()
        if isinstance(texts, str):
            raise InvalidInputError("embed_texts takes a list of texts, not one string")
        ids = self.tokenizer.encode(list(texts))
        return self._stack([self.textual.run(row[None])[0] for row in ids])

    def _stack(self, rows: list[np.ndarray]) -> np.ndarray:
        if not rows:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = _normalised(np.stack(rows))
        self.dim = vectors.shape[1]
        return vectors
