"""CLIP's text tokenizer from the ``tokenizer.json`` next to the text graph (no transformers).

The file holds CLIP's byte-level BPE with its normaliser (NFC, whitespace runs to one
space, lower case) and the start/end post-processor, so the ``tokenizers`` library alone
gives the same ids as transformers' ``CLIPTokenizer``. Texts are cut to the context length
(start token + 75 tokens + end token for CLIP's 77) and padded with the pad token.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from memesearch.errors import InvalidInputError, ModelUnavailableError

DEFAULT_CONTEXT_LENGTH = 77
DEFAULT_PAD_TOKEN = "<|endoftext|>"


def _token_text(value) -> str | None:
    """tokenizer_config.json stores special tokens as strings or as {"content": ...}."""
    if isinstance(value, dict):
        value = value.get("content")
    return value if isinstance(value, str) else None


class ClipTokenizer:
    def __init__(self, tokenizer_file: Path, *, context_length: int = DEFAULT_CONTEXT_LENGTH,
                 pad_token: str = DEFAULT_PAD_TOKEN) -> None:
        from tokenizers import Tokenizer

        try:
            self._tokenizer = Tokenizer.from_file(str(tokenizer_file))
        except Exception as exc:  # tokenizers raises a bare Exception for bad JSON
            raise ModelUnavailableError(
                f"cannot read the CLIP tokenizer {tokenizer_file}: {exc}",
                hint="download the model again with `memesearch models pull`",
            ) from exc
        pad_id = self._tokenizer.token_to_id(pad_token)
        if pad_id is None:
            raise ModelUnavailableError(f"the CLIP tokenizer {tokenizer_file} has no pad token {pad_token!r}")
        self.context_length = context_length
        self._tokenizer.enable_truncation(max_length=context_length)
        self._tokenizer.enable_padding(length=context_length, pad_id=pad_id, pad_token=pad_token)

    @classmethod
    def from_dir(cls, textual_dir: Path, *, context_length: int = DEFAULT_CONTEXT_LENGTH) -> ClipTokenizer:
        """``tokenizer.json`` (+ the pad token of ``tokenizer_config.json``) of a ``textual/`` folder."""
        textual_dir = Path(textual_dir)
        pad_token = DEFAULT_PAD_TOKEN
        config = textual_dir / "tokenizer_config.json"
        if config.is_file():
            try:
                pad_token = _token_text(json.loads(config.read_text(encoding="utf-8")).get("pad_token")) or pad_token
            except (OSError, ValueError, AttributeError) as exc:
                raise ModelUnavailableError(f"cannot read {config}: {exc}") from exc
        return cls(textual_dir / "tokenizer.json", context_length=context_length, pad_token=pad_token)

    def encode(self, texts: list[str]) -> np.ndarray:
        """int32 ids, shape (len(texts), context_length)."""
        for text in texts:
            if not isinstance(text, str):
                raise InvalidInputError(f"expected a text, got {type(text).__name__}")
        if not texts:
            return np.zeros((0, self.context_length), dtype=np.int32)
        encodings = self._tokenizer.encode_batch(list(texts))
        return np.asarray([encoding.ids for encoding in encodings], dtype=np.int32)
