"""A tiny random CLIP (ViT vision tower + causal text tower + projections), built offline.

Same architecture and checkpoint layout as ``openai/clip-vit-base-patch32`` (CLIPModel,
CLIPTokenizer files, CLIPImageProcessor config), only a few thousand parameters, so our
exporter and ONNX runtime can be compared with transformers in seconds. The vocabulary has
CLIP's structure: 256 byte symbols, the same symbols with ``</w>``, merges for a few words,
then ``<|startoftext|>`` and ``<|endoftext|>`` (the highest id, as in CLIP).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from memesearch.errors import require
from memesearch.ml.families.clip.torch_backend import features

# torch-only module: without torch its import fails here, naming the extra to install.
require("torch", extra="torch", purpose="The tiny CLIP model")

TINY_IMAGE_SIZE = 64
TINY_PATCH = 16
CONTEXT_LENGTH = 77
BOS, EOS = "<|startoftext|>", "<|endoftext|>"
#: Words merged into whole tokens so that test captions are short; anything else
#: still tokenizes through the byte symbols.
_WORDS = ["a", "photo", "of", "the", "cat", "dog", "meme", "funny", "when", "you", "drake", "sign", "text", "red"]

_PURPOSE = "Building the tiny CLIP"


def _byte_symbols() -> list[str]:
    from tokenizers.pre_tokenizers import ByteLevel

    return sorted(ByteLevel.alphabet())


def vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    symbols = _byte_symbols()
    tokens = symbols + [symbol + "</w>" for symbol in symbols]
    merges: list[tuple[str, str]] = []
    for word in _WORDS:
        pieces = list(word[:-1]) + [word[-1] + "</w>"]
        left = pieces[0]
        for piece in pieces[1:]:
            if (left, piece) not in merges:
                merges.append((left, piece))
                tokens.append(left + piece)
            left += piece
    tokens += [BOS, EOS]
    vocab = {token: index for index, token in enumerate(dict.fromkeys(tokens))}
    return vocab, merges


def build_tokenizer():
    """transformers' CLIPTokenizer over the tiny vocabulary."""
    transformers = require("transformers", extra="torch", purpose=_PURPOSE)
    vocab, merges = vocab_and_merges()
    return transformers.CLIPTokenizer(vocab=vocab, merges=merges, model_max_length=CONTEXT_LENGTH)


def tiny_config(vocab_size: int, *, eos_token_id: int = 2):
    """CLIPConfig with tiny towers. ``eos_token_id=2`` is openai's legacy value: the text
    tower then pools at the highest id (argmax), otherwise at the first ``eos_token_id``."""
    transformers = require("transformers", extra="torch", purpose=_PURPOSE)
    text = transformers.CLIPTextConfig(
        vocab_size=vocab_size, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, max_position_embeddings=CONTEXT_LENGTH, projection_dim=24,
        bos_token_id=vocab_size - 2, eos_token_id=eos_token_id, pad_token_id=1,
    )
    vision = transformers.CLIPVisionConfig(
        hidden_size=48, intermediate_size=96, num_hidden_layers=2, num_attention_heads=4,
        image_size=TINY_IMAGE_SIZE, patch_size=TINY_PATCH, projection_dim=24,
    )
    return transformers.CLIPConfig(text_config=text.to_dict(), vision_config=vision.to_dict(), projection_dim=24)


def build_tiny_checkpoint(out_dir: Path, *, seed: int = 0, eos_token_id: int = 2) -> Path:
    """Write a random tiny CLIP checkpoint with tokenizer and image processor files."""
    torch = require("torch", extra="torch", purpose=_PURPOSE)
    transformers = require("transformers", extra="torch", purpose=_PURPOSE)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    tokenizer.save_pretrained(out_dir)
    size = {"shortest_edge": TINY_IMAGE_SIZE}
    crop = {"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE}
    transformers.CLIPImageProcessor(size=size, crop_size=crop).save_pretrained(out_dir)
    torch.manual_seed(seed)
    model = transformers.CLIPModel(tiny_config(len(tokenizer), eos_token_id=eos_token_id)).eval()
    model.save_pretrained(out_dir)
    return out_dir


# ----------------------------------------------------------------------------- the reference


class Reference:
    """transformers' CLIPModel + CLIPImageProcessor + CLIPTokenizer, one item per forward pass
    (as our ONNX runtime runs them: int8 activation scales are per tensor)."""

    def __init__(self, checkpoint_dir: Path) -> None:
        self.torch = require("torch", extra="torch", purpose="Running the CLIP reference")
        transformers = require("transformers", extra="torch", purpose="Running the CLIP reference")
        self.model = transformers.CLIPModel.from_pretrained(checkpoint_dir, attn_implementation="eager").eval()
        self.processor = transformers.CLIPImageProcessor.from_pretrained(checkpoint_dir)
        self.tokenizer = transformers.CLIPTokenizer.from_pretrained(checkpoint_dir)
        self.context_length = self.model.config.text_config.max_position_embeddings

    def token_ids(self, texts: Sequence[str]) -> list[list[int]]:
        encoded = self.tokenizer(list(texts), padding="max_length", max_length=self.context_length, truncation=True)
        return encoded["input_ids"]

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        rows = []
        with self.torch.no_grad():
            for image in images:
                pixels = self.processor(images=image, return_tensors="pt")["pixel_values"]
                rows.append(features(self.model.get_image_features(pixel_values=pixels))[0])
        return _normalised(self.torch.stack(rows).numpy())

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        rows = []
        with self.torch.no_grad():
            for ids in self.token_ids(texts):
                input_ids = self.torch.tensor([ids], dtype=self.torch.long)
                rows.append(features(self.model.get_text_features(input_ids=input_ids))[0])
        return _normalised(self.torch.stack(rows).numpy())


def _normalised(vectors: np.ndarray) -> np.ndarray:
    vectors = vectors.astype(np.float32)
    return vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)


#: Texts the checks embed: plain words, unicode, punctuation, whitespace, empty, > 77 tokens.
CHECK_TEXTS = [
    "a photo of a cat",
    "When you see the funny meme",
    "Ünïcödé café — naïve 日本語 😀 ñ",
    "don't!!! ... $100, #meme @you's (drake) [sign]",
    "  multiple\n\twhitespace   runs  ",
    "",
    " ".join(["the red dog sign"] * 30),
]


def check_images() -> list[Image.Image]:
    """Fixed pictures of different shapes and modes."""
    from memesearch.ml.check_rows import fixed_image

    wide = fixed_image(96, 72)
    tall = fixed_image(40, 90).convert("RGBA")
    return [wide, tall, Image.new("L", (70, 70), 128)]
