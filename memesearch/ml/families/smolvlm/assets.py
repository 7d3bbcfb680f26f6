"""Which files a SmolVLM ONNX folder holds, and the few config values the runtime needs.

The layout is the community one of ``HuggingFaceTB/SmolVLM-256M-Instruct`` /
``SmolVLM-500M-Instruct``: ``onnx/{vision_encoder,embed_tokens,decoder_model_merged}{suffix}.onnx``
next to ``config.json``, ``generation_config.json``, ``preprocessor_config.json`` and
``tokenizer.json``. Only JSON is read here: no transformers at run time.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from memesearch.errors import ModelUnavailableError
from memesearch.ml.families.smolvlm.preprocess import ImageSettings
from memesearch.ml.onnx_runtime import community_files

ONNX_PARTS = ("vision_encoder", "embed_tokens", "decoder_model_merged")
CONFIG_FILES = (
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "tokenizer.json",
)


def dtype_suffix(dtype: str) -> str:
    return community_files.dtype_suffix(dtype, "SmolVLM")


def onnx_path(part: str, dtype: str) -> str:
    return community_files.onnx_file(part, dtype, "SmolVLM")


def required_files(dtype: str) -> list[str]:
    """Relative paths of every file the ONNX runtime reads for ``dtype``."""
    return [onnx_path(part, dtype) for part in ONNX_PARTS] + list(CONFIG_FILES)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ModelUnavailableError(f"cannot read {path}: {exc}") from exc


def _as_list(value) -> list[int]:
    if value is None:
        return []
    return [int(value)] if isinstance(value, int) else [int(v) for v in value]


@dataclass(frozen=True)
class SmolVLMConfig:
    image_token_id: int
    image_seq_len: int
    num_layers: int
    num_kv_heads: int
    head_dim: int
    eos_token_ids: tuple[int, ...]
    pad_token_id: int
    image: ImageSettings

    @classmethod
    def from_dir(cls, model_dir: Path) -> SmolVLMConfig:
        config = _read_json(model_dir / "config.json")
        generation = _read_json(model_dir / "generation_config.json")
        text = config.get("text_config", {})
        vision = config.get("vision_config", {})
        processor = {}
        if (model_dir / "processor_config.json").is_file():
            processor = _read_json(model_dir / "processor_config.json")
        if (model_dir / "preprocessor_config.json").is_file():
            image_config = _read_json(model_dir / "preprocessor_config.json")
        else:  # transformers >= 5 nests the image processor in processor_config.json
            image_config = processor.get("image_processor", {})

        scale = int(config.get("scale_factor", 2))
        patches_per_side = int(vision.get("image_size", 512)) // int(vision.get("patch_size", 16))
        image_seq_len = int(processor.get("image_seq_len", patches_per_side**2 // scale**2))
        heads = int(text.get("num_attention_heads", 9))
        head_dim = text.get("head_dim") or int(text.get("hidden_size", 576)) // heads
        eos = _as_list(generation.get("eos_token_id")) or _as_list(text.get("eos_token_id"))
        pad = generation.get("pad_token_id", text.get("pad_token_id"))
        return cls(
            image_token_id=int(config["image_token_id"]),
            image_seq_len=image_seq_len,
            num_layers=int(text.get("num_hidden_layers", 30)),
            num_kv_heads=int(text.get("num_key_value_heads", heads)),
            head_dim=int(head_dim),
            eos_token_ids=tuple(eos),
            pad_token_id=int(pad if pad is not None else 0),
            image=ImageSettings.from_config(image_config),
        )
