"""Export a transformers CLIP checkpoint to Immich's layout (``immich-app/ViT-B-32__openai``).

Writes::

    config.json                 open_clip-style model config (embed_dim, vision_cfg, text_cfg)
    visual/model.onnx           image [batch, 3, H, W] float32 -> embedding [batch, dim], L2-normalised
    visual/preprocess_cfg.json  size, mean, std, interpolation
    textual/model.onnx          text [batch, 77] int32 -> embedding [batch, dim], L2-normalised
    textual/tokenizer.json (+ tokenizer_config.json and the other tokenizer files)

and with ``int8=True`` also ``visual/model_int8.onnx`` and ``textual/model_int8.onnx``
(dynamic int8 MatMuls, the files our runtime otherwise derives from fp32 on first use).
"""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

from memesearch.errors import require
from memesearch.ml.families.common.export import OPSET
from memesearch.ml.families.clip.onnx_backend import CONFIG_FILE, onnx_file, quantize_file
from memesearch.ml.families.clip.preprocess import PREPROCESS_FILE, ImageSettings

# torch-only module: without torch its import fails here, naming the extra to install.
require("torch", extra="export", purpose="Exporting CLIP to ONNX")

_PURPOSE = "Exporting CLIP to ONNX"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "vocab.json", "merges.txt")


def _towers(model):
    """(vision, text) torch modules ending in the projection and an L2 normalisation."""
    torch = require("torch", extra="export", purpose=_PURPOSE)
    from memesearch.ml.families.clip.torch_backend import features

    class VisionTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, image):
            embedding = features(self.model.get_image_features(pixel_values=image))
            return torch.nn.functional.normalize(embedding, dim=-1)

    class TextTower(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, text):
            # int32 ids as in Immich's graphs; the embedding lookup wants int64.
            embedding = features(self.model.get_text_features(input_ids=text.long()))
            return torch.nn.functional.normalize(embedding, dim=-1)

    return VisionTower().eval(), TextTower().eval()


def _torch_export(module, sample, path: Path, input_name: str) -> None:
    torch = require("torch", extra="export", purpose=_PURPOSE)
    path.parent.mkdir(parents=True, exist_ok=True)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        # The pooled-token index (argmax) is never negative, which is all this warning is about.
        warnings.filterwarnings("ignore", message="Exporting aten::index operator", category=UserWarning)
        torch.onnx.export(
            module,
            (sample,),
            str(path),
            input_names=[input_name],
            output_names=["embedding"],
            dynamic_axes={input_name: {0: "batch_size"}, "embedding": {0: "batch_size"}},
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,  # the TorchScript exporter needs no onnxscript and keeps our names
        )


def _open_clip_config(config) -> dict:
    vision, text = config.vision_config, config.text_config
    return {
        "embed_dim": config.projection_dim,
        "vision_cfg": {
            "image_size": vision.image_size,
            "layers": vision.num_hidden_layers,
            "width": vision.hidden_size,
            "patch_size": vision.patch_size,
        },
        "text_cfg": {
            "context_length": text.max_position_embeddings,
            "vocab_size": text.vocab_size,
            "width": text.hidden_size,
            "heads": text.num_attention_heads,
            "layers": text.num_hidden_layers,
        },
    }


def _image_settings(checkpoint_dir: Path, image_size: int) -> ImageSettings:
    """preprocessor_config.json (CLIPImageProcessor) in Immich's terms."""
    path = checkpoint_dir / "preprocessor_config.json"
    raw = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    crop = raw.get("crop_size", image_size)
    crop = int(crop["height"] if isinstance(crop, dict) else crop)
    size = raw.get("size", {"shortest_edge": crop})
    shortest = int(size.get("shortest_edge", crop) if isinstance(size, dict) else size)
    resample = {2: "bilinear", 3: "bicubic"}.get(raw.get("resample", 3))
    if resample is None:
        raise ValueError(f"{path}: resample {raw.get('resample')} is not bilinear (2) or bicubic (3)")
    defaults = ImageSettings()
    return ImageSettings(
        crop=crop,
        shortest_edge=shortest,
        mean=tuple(raw.get("image_mean", defaults.mean)),
        std=tuple(raw.get("image_std", defaults.std)),
        interpolation=resample,
    )


def export(checkpoint_dir: Path, out_dir: Path, *, int8: bool = False) -> Path:
    """Export ``checkpoint_dir`` (a transformers CLIPModel checkpoint) into ``out_dir``."""
    torch = require("torch", extra="export", purpose=_PURPOSE)
    transformers = require("transformers", extra="export", purpose=_PURPOSE)
    checkpoint_dir, out_dir = Path(checkpoint_dir), Path(out_dir)
    model = transformers.CLIPModel.from_pretrained(checkpoint_dir, attn_implementation="eager", dtype=torch.float32)
    model.eval()
    config = model.config
    vision_tower, text_tower = _towers(model)
    image_size = config.vision_config.image_size
    context = config.text_config.max_position_embeddings

    _torch_export(vision_tower, torch.randn(2, 3, image_size, image_size), out_dir / onnx_file("visual", "fp32"), "image")
    ids = torch.ones(2, context, dtype=torch.int32)
    _torch_export(text_tower, ids, out_dir / onnx_file("textual", "fp32"), "text")
    if int8:
        for tower in ("visual", "textual"):
            quantize_file(out_dir / onnx_file(tower, "fp32"), out_dir / onnx_file(tower, "int8"))

    (out_dir / CONFIG_FILE).write_text(json.dumps(_open_clip_config(config), indent=2))
    settings = _image_settings(checkpoint_dir, image_size)
    (out_dir / PREPROCESS_FILE).write_text(json.dumps(settings.to_json(), indent=2))
    for name in TOKENIZER_FILES:
        if (checkpoint_dir / name).is_file():
            shutil.copy2(checkpoint_dir / name, out_dir / "textual" / name)
    return out_dir
