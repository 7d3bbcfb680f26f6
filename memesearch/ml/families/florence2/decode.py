"""Greedy decoding through Florence-2's merged BART decoder (numpy + onnxruntime).

Reproduces what transformers' ``generate(do_sample=False, num_beams=1)`` does with
Florence-2's generation config: start from ``decoder_start_token_id``, force BOS on
the first step and EOS on the last allowed one, ban repeated n-grams, stop at EOS.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from memesearch.ml.base import CaptionRequest, CaptionResult


@dataclass(frozen=True)
class DecodeSettings:
    decoder_start_token_id: int = 2
    eos_token_id: int = 2
    pad_token_id: int = 1
    forced_bos_token_id: int | None = 0
    forced_eos_token_id: int | None = 2
    no_repeat_ngram_size: int = 0

    @classmethod
    def from_model_dir(cls, model_dir: Path) -> DecodeSettings:
        """generation_config.json first, config.json's text_config as a fallback."""
        merged: dict = {}
        config_path = Path(model_dir) / "config.json"
        if config_path.is_file():
            config = json.loads(config_path.read_text())
            merged.update(config.get("text_config") or {})
        generation_path = Path(model_dir) / "generation_config.json"
        if generation_path.is_file():
            merged.update(json.loads(generation_path.read_text()))
        eos = merged.get("eos_token_id", 2)
        return cls(
            decoder_start_token_id=int(merged.get("decoder_start_token_id", 2)),
            eos_token_id=int(eos[0] if isinstance(eos, list) else eos),
            pad_token_id=int(merged.get("pad_token_id", 1)),
            forced_bos_token_id=merged.get("forced_bos_token_id", 0),
            forced_eos_token_id=merged.get("forced_eos_token_id", 2),
            no_repeat_ngram_size=int(merged.get("no_repeat_ngram_size") or 0),
        )


def banned_ngram_tokens(sequence: list[int], ngram_size: int) -> list[int]:
    """Tokens that would repeat an n-gram already in ``sequence`` (transformers' NoRepeatNGram)."""
    if ngram_size <= 0 or len(sequence) + 1 < ngram_size:
        return []
    prefix = tuple(sequence[len(sequence) - ngram_size + 1 :])
    banned = []
    for start in range(len(sequence) - ngram_size + 1):
        if tuple(sequence[start : start + ngram_size - 1]) == prefix:
            banned.append(sequence[start + ngram_size - 1])
    return banned


def choose_next_tokens(
    logits: np.ndarray, sequences: list[list[int]], settings: DecodeSettings, max_new_tokens: int
) -> np.ndarray:
    """Greedy pick for each row after applying the generation config's logits processors."""
    scores = logits.astype(np.float32, copy=True)
    current_length = len(sequences[0])  # decoder start token included, as in transformers
    for row, sequence in enumerate(sequences):
        banned = banned_ngram_tokens(sequence, settings.no_repeat_ngram_size)
        if banned:
            scores[row, banned] = -np.inf
    if current_length == 1 and settings.forced_bos_token_id is not None:
        scores[:] = -np.inf
        scores[:, settings.forced_bos_token_id] = 0.0
    if current_length == max_new_tokens and settings.forced_eos_token_id is not None:
        scores[:] = -np.inf
        scores[:, settings.forced_eos_token_id] = 0.0
    return scores.argmax(axis=-1)


class MergedDecoder:
    """Runs ``decoder_model_merged``: first step on an empty cache, then one token at a time."""

    def __init__(self, session, embed_session, *, num_heads: int, head_dim: int) -> None:
        self.session = session
        self.embed_session = embed_session
        self.input_names = {item.name for item in session.get_inputs()}
        self.input_types = {item.name: item.type for item in session.get_inputs()}
        self.output_names = [item.name for item in session.get_outputs()]
        self.past_names = sorted(name for name in self.input_names if name.startswith("past_key_values."))
        self.num_heads = num_heads
        self.head_dim = head_dim

    def embed(self, token_ids: np.ndarray) -> np.ndarray:
        return self.embed_session.run(None, {"input_ids": token_ids.astype(np.int64)})[0]

    def _cast(self, name: str, array: np.ndarray) -> np.ndarray:
        wanted = np.float16 if self.input_types.get(name) == "tensor(float16)" else None
        return array.astype(wanted) if wanted is not None and array.dtype != wanted else array

    def _empty_cache(self, batch: int, dtype) -> dict[str, np.ndarray]:
        empty = np.zeros((batch, self.num_heads, 0, self.head_dim), dtype=dtype)
        return {name: empty for name in self.past_names}

    def step(self, token_ids, encoder_hidden, encoder_mask, cache) -> tuple[np.ndarray, dict]:
        """Logits of the last position and the updated cache for ``token_ids`` (batch, 1)."""
        embeds = self.embed(token_ids)
        first_step = cache is None
        if first_step:
            cache = self._empty_cache(token_ids.shape[0], embeds.dtype)
        feeds = {
            "inputs_embeds": embeds,
            "encoder_hidden_states": encoder_hidden,
            "encoder_attention_mask": encoder_mask.astype(np.int64),
            "use_cache_branch": np.array([not first_step], dtype=bool),
            **cache,
        }
        feeds = {name: self._cast(name, value) for name, value in feeds.items() if name in self.input_names}
        outputs = dict(zip(self.output_names, self.session.run(None, feeds), strict=True))
        new_cache = {
            name: outputs[name.replace("past_key_values.", "present.", 1)] for name in self.past_names
        }
        return outputs["logits"][:, -1, :], new_cache


def greedy_generate(
    decoder: MergedDecoder,
    encoder_hidden: np.ndarray,
    encoder_mask: np.ndarray,
    settings: DecodeSettings,
    max_new_tokens: int,
) -> list[list[int]]:
    """Full decoder sequences per row (start token, forced BOS, text, EOS if reached)."""
    batch = encoder_hidden.shape[0]
    sequences = [[settings.decoder_start_token_id] for _ in range(batch)]
    finished = np.zeros(batch, dtype=bool)
    next_input = np.full((batch, 1), settings.decoder_start_token_id, dtype=np.int64)
    cache = None
    for _ in range(max_new_tokens):
        logits, cache = decoder.step(next_input, encoder_hidden, encoder_mask, cache)
        tokens = choose_next_tokens(logits, sequences, settings, max_new_tokens)
        tokens = np.where(finished, settings.pad_token_id, tokens)
        for row, token in enumerate(tokens.tolist()):
            sequences[row].append(token)
        finished |= tokens == settings.eos_token_id
        if finished.all():
            break
        next_input = tokens.reshape(batch, 1).astype(np.int64)
    return sequences


def strip_sequence(sequence: list[int], settings: DecodeSettings) -> list[int]:
    """Generated text ids: without start token, forced BOS, and anything from EOS on."""
    ids = sequence[1:]
    if ids and settings.forced_bos_token_id is not None and ids[0] == settings.forced_bos_token_id:
        ids = ids[1:]
    if settings.eos_token_id in ids:
        ids = ids[: ids.index(settings.eos_token_id)]
    return ids


def caption_by_limit(
    requests: list[CaptionRequest],
    generate_ids: Callable[[list[CaptionRequest], int], list[list[int]]],
    decode: Callable[[list[int]], str],
) -> list[CaptionResult]:
    """Run rows with the same ``max_new_tokens`` together (forced EOS depends on it); keep order."""
    results: dict[int, CaptionResult] = {}
    by_limit: dict[int, list[int]] = {}
    for index, request in enumerate(requests):
        by_limit.setdefault(request.max_new_tokens, []).append(index)
    for limit, indices in by_limit.items():
        generated = generate_ids([requests[i] for i in indices], limit)
        for index, ids in zip(indices, generated, strict=True):
            results[index] = CaptionResult(text=decode(ids), token_ids=ids)
    return [results[index] for index in range(len(requests))]
