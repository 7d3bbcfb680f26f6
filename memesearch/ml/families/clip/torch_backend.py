"""CLIP on PyTorch (the ``[torch]`` extra): transformers' ``CLIPModel`` as the fallback backend.

Same interface as :class:`memesearch.ml.families.clip.onnx_backend.ClipOnnxEmbedder`. Images go through our
numpy preprocessing (equal to ``CLIPImageProcessor`` pixel for pixel, tests/models/test_clip.py),
so only the tokenizer and the model come from transformers.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from memesearch.errors import InvalidInputError, require
from memesearch.ml.base import LazyModel
from memesearch.ml.families.clip.preprocess import ImageSettings, preprocess

# torch-only module: without torch its import fails here, naming the extra to install.
require("torch", extra="torch", purpose="The PyTorch CLIP backend")

_PURPOSE = "CLIP on PyTorch"


def features(output):
    """``get_*_features`` returns a tensor in transformers 4 and an output object in 5."""
    return output if hasattr(output, "dim") else output.pooler_output


def _side(value, key: str) -> int | None:
    """One entry of a processor size: a dict, transformers 5's SizeDict, or a plain int."""
    if isinstance(value, int):
        return value
    found = value.get(key) if isinstance(value, dict) else getattr(value, key, None)
    return None if found is None else int(found)


def _image_settings(processor) -> ImageSettings:
    crop = _side(processor.crop_size, "height") or 224
    return ImageSettings(
        crop=crop,
        shortest_edge=_side(processor.size, "shortest_edge") or crop,
        mean=tuple(processor.image_mean),
        std=tuple(processor.image_std),
        interpolation={2: "bilinear"}.get(int(processor.resample), "bicubic"),
    )


class ClipTorchEmbedder(LazyModel):
    backend = "torch"
    dtype = "fp32"
    batch_size = 16

    def __init__(self, model_dir_or_repo: str | Path, *, revision: str | None = None, threads: int | None = None) -> None:
        super().__init__()
        self.source = str(model_dir_or_repo)
        self.revision = revision
        self.threads = threads
        self.dim = 0

    def _load(self) -> None:
        self.torch = require("torch", extra="torch", purpose=_PURPOSE)
        transformers = require("transformers", extra="torch", purpose=_PURPOSE)
        if self.threads:
            self.torch.set_num_threads(self.threads)
        options = {"revision": self.revision} if self.revision else {}
        self.model = transformers.CLIPModel.from_pretrained(self.source, dtype=self.torch.float32, **options).eval()
        self.tokenizer = transformers.CLIPTokenizer.from_pretrained(self.source, **options)
        processor = transformers.CLIPImageProcessor.from_pretrained(self.source, **options)
        self.image_settings = _image_settings(processor)
        self.context_length = self.model.config.text_config.max_position_embeddings
        self.dim = self.model.config.projection_dim

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        self.ensure_loaded()
        rows = []
        for start in range(0, len(images), self.batch_size):
            pixels = np.stack([preprocess(image, self.image_settings) for image in images[start : start + self.batch_size]])
            with self.torch.inference_mode():
                rows.append(features(self.model.get_image_features(pixel_values=self.torch.from_numpy(pixels))).numpy())
        return self._normalised(rows)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        self.ensure_loaded()
        if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
            raise InvalidInputError("embed_texts takes a list of texts")
        rows = []
        for start in range(0, len(texts), self.batch_size):
            batch = list(texts[start : start + self.batch_size])
            ids = self.tokenizer(batch, padding="max_length", max_length=self.context_length, truncation=True,
                                 return_tensors="pt")["input_ids"]
            with self.torch.inference_mode():
                rows.append(features(self.model.get_text_features(input_ids=ids)).numpy())
        return self._normalised(rows)

    def _normalised(self, rows: list[np.ndarray]) -> np.ndarray:
        if not rows:
            return np.zeros((0, self.dim), dtype=np.float32)
        vectors = np.concatenate(rows).astype(np.float32)
        return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
