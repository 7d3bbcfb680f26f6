"""SmolVLM (Idefics3) captions through our own ONNX Runtime generation loop.

Three community ONNX graphs (``onnx/vision_encoder``, ``onnx/embed_tokens``,
``onnx/decoder_model_merged``) driven like transformers' ``generate(do_sample=False)``:
the image tiles go through the vision encoder, their features replace the ``<image>`` token
embeddings, and the decoder runs greedily with its KV cache. Two kinds of decoder graph, told
apart by their inputs:

* the community one (``attention_mask``, ``position_ids``; HuggingFace downloads and our traced
  export): a batch is left-padded, the mask hides the padding, position ids are ``cumsum(mask) - 1``;
* our GroupQueryAttention one (``seqlens_k``, ``total_sequence_length``; smolvlm/decoder_graph.py,
  what our exporter writes): a batch is right-padded and each row's length is all it needs.

A pulled model's GroupQueryAttention decoder, derived from its checkpoint
(``onnx/decoder_gqa*.onnx``, smolvlm/derive_decoder.py), is preferred to its community one.

Run time needs onnxruntime, tokenizers, numpy and Pillow only.
"""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path

import numpy as np

from memesearch.errors import ModelUnavailableError
from memesearch.ml.base import CaptionRequest, CaptionResult, Captioner
from memesearch.ml.caption_streams import threads_per_stream
from memesearch.ml.onnx_runtime.session import onnxruntime, open_session
from memesearch.ml.families.smolvlm.assets import (
    ONNX_PARTS,
    SmolVLMConfig,
    dtype_suffix,
    onnx_path,
    required_files,
)
from memesearch.ml.families.smolvlm.decoder_graph import GQA_INPUTS
from memesearch.ml.families.smolvlm.derive_decoder import after_pull, checkpoint_files, decoder_choice, decoder_line
from memesearch.ml.families.smolvlm.preprocess import preprocess_image
from memesearch.ml.families.smolvlm.prompt import clean_caption, model_prompt

# required_files, checkpoint_files, after_pull and decoder_line: the family hooks of downloads (ml/download.py).
__all__ = ["DEFAULT_PROMPT", "OnnxSmolVLMCaptioner", "after_pull", "checkpoint_files", "decoder_line", "required_files"]

log = logging.getLogger(__name__)
#: (model folder, dtype) pairs whose community-decoder fallback was logged: once per process.
_FALLBACK_LOGGED: set[tuple[str, str]] = set()

DEFAULT_PROMPT = "Describe this meme in one or two sentences, including any text it shows."

_ORT_TO_NUMPY = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


def _decoder_rows_independent(session) -> bool:
    """Whether the decoder graph says it was made per row (``quantize_matmuls_8bit_rows``) and this
    CPU's MatMulNBits kernel keeps rows apart for its settings (``row_exact``). A community int8
    decoder (one activation scale per tensor) has no such mark."""
    from memesearch.ml.onnx_runtime.quantize import per_row_matmuls
    from memesearch.ml.onnx_runtime.row_exact import matmul_nbits_rows_independent

    settings = per_row_matmuls(session.get_modelmeta().custom_metadata_map)
    return settings is not None and matmul_nbits_rows_independent(*settings)


def _float_type(session, name: str):
    for node in session.get_inputs():
        if node.name == name:
            return _ORT_TO_NUMPY.get(node.type, np.float32)
    return np.float32


class OnnxSmolVLMCaptioner(Captioner):
    backend = "onnx"

    def __init__(
        self,
        model_dir: Path,
        *,
        dtype: str = "fp32",
        threads: int | None = None,
        image_longest_edge: int | None = None,
        streams: int = 1,
    ) -> None:
        """``image_longest_edge`` overrides the processor's first resize (2048 px upstream, i.e.
        4x4 tiles of 512 px + 1 global tile); 512 gives a single tile, ~15x fewer image tokens.
        ``streams`` batches run at once through the same sessions (memesearch.ml.caption_streams),
        which then get the cores divided between the streams as intra-op threads."""
        super().__init__()
        dtype_suffix(dtype)  # fail fast on an unknown dtype
        self.model_dir = Path(model_dir)
        self.dtype = dtype
        self.threads = threads
        self.image_longest_edge = image_longest_edge
        self.model_id = f"smolvlm:{self.model_dir.name}"
        # Exact weight types batch 8 memes (1.24-1.43x one at a time for int8, 1.36x for fp32 on
        # 2 cores; batch 4 gives 1.11-1.33x: docs/BENCHMARKS.md); quantised ones take 1 a call
        # (Captioner.call_batch), except a per-row int8 decoder on a CPU whose kernel computes rows
        # alone (batches_exactly).
        self.batch_size = 8
        self._rows_independent = False
        self.streams = max(1, streams)
        #: GroupQueryAttention decoders: one preallocated KV buffer per layer, written in place.
        self.share_kv_buffer = True

    # -- loading ---------------------------------------------------------------------------

    def _load(self) -> None:
        missing = [name for name in required_files(self.dtype) if not (self.model_dir / name).is_file()]
        if missing:
            raise ModelUnavailableError(
                f"SmolVLM ({self.dtype}) files missing in {self.model_dir}: {', '.join(missing)}",
                hint="download them with `memesearch models pull` or export them with memesearch.ml.families.smolvlm.export",
            )
        from tokenizers import Tokenizer

        self.config = SmolVLMConfig.from_dir(self.model_dir)
        if self.image_longest_edge:
            self.config = replace(self.config, image=replace(self.config.image, longest_edge=self.image_longest_edge))
        try:
            self.tokenizer = Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        except Exception as exc:  # tokenizers raises a bare Exception on bad JSON
            raise ModelUnavailableError(f"cannot load {self.model_dir / 'tokenizer.json'}: {exc}") from exc
        # low_memory: the vision encoder and the decoder run one after the other, so one shared
        # arena serves both (a 13-tile caption peaked at ~1.07 GB with one arena per graph).
        threads = threads_per_stream(self.threads, self.streams)
        paths = {part: onnx_path(part, self.dtype) for part in ONNX_PARTS}
        paths["decoder_model_merged"], why_community = decoder_choice(self.model_dir, self.dtype)
        self.decoder_file = paths["decoder_model_merged"]
        sessions = {
            part: open_session(self.model_dir / path, threads=threads, low_memory=True) for part, path in paths.items()
        }
        self.vision = sessions["vision_encoder"]
        self.embed = sessions["embed_tokens"]
        self.decoder = sessions["decoder_model_merged"]
        self._decoder_inputs = {node.name for node in self.decoder.get_inputs()}
        self._gqa = all(name in self._decoder_inputs for name in GQA_INPUTS)
        # An exported folder's decoder_model_merged may be our graph already: only a traced one is worth a note.
        if not self._gqa and (key := (str(self.model_dir), self.dtype)) not in _FALLBACK_LOGGED:
            _FALLBACK_LOGGED.add(key)
            why = why_community or f"{self.decoder_file} has no GroupQueryAttention inputs"
            log.warning("%s (%s) runs the slower community decoder: %s", self.model_id, self.dtype, why)
        self._rows_independent = _decoder_rows_independent(self.decoder)
        self._pixel_type = _float_type(self.vision, "pixel_values")
        self._embeds_type = _float_type(self.decoder, "inputs_embeds")
        self._past_type = _float_type(self.decoder, "past_key_values.0.key")

    @property
    def batches_exactly(self) -> bool:
        """fp32, or a decoder whose MatMuls quantise each row alone (the per-row int8 decoder,
        models.yml ``int8_decoder: per_row``) on a CPU where that holds. The vision encoder and the
        embeddings need nothing: each image's tiles run alone (``_image_features``) and a Gather has
        no rows to mix."""
        return super().batches_exactly or self._rows_independent

    # -- one batch ---------------------------------------------------------------------------

    def _caption_batch(self, requests: list[CaptionRequest]) -> list[CaptionResult]:
        generated = self.generate_ids(requests)
        return [
            CaptionResult(text=clean_caption(self.tokenizer.decode(ids, skip_special_tokens=True)), token_ids=ids)
            for ids in generated
        ]

    def generate_ids(self, requests: list[CaptionRequest]) -> list[list[int]]:
        """Greedy token ids per request (without prompt and EOS)."""
        self.ensure_loaded()
        prompt_ids, features = [], []
        for request in requests:
            image = preprocess_image(request.image, self.config.image)
            text = model_prompt(request.prompt, image.rows, image.cols, self.config.image_seq_len)
            prompt_ids.append(self.tokenizer.encode(text, add_special_tokens=True).ids)
            features.append(self._image_features(image.pixel_values))
        input_ids, attention_mask = self._pad(prompt_ids, right=self._gqa)
        embeds = self._embed(input_ids)
        image_slots = input_ids == self.config.image_token_id
        image_features = np.concatenate([f.reshape(-1, f.shape[-1]) for f in features])
        if int(image_slots.sum()) != image_features.shape[0]:
            raise ModelUnavailableError(
                f"SmolVLM prompt has {int(image_slots.sum())} image tokens but the vision encoder gave "
                f"{image_features.shape[0]} features",
                hint="config.json / processor_config.json do not match the ONNX files",
            )
        embeds[image_slots] = image_features.astype(embeds.dtype)
        max_new_tokens = max(request.max_new_tokens for request in requests)
        limits = [request.max_new_tokens for request in requests]
        if self._gqa:
            return self._greedy_gqa(embeds, attention_mask.sum(axis=1), max_new_tokens, limits)
        return self._greedy(embeds, attention_mask, max_new_tokens, limits)

    def _image_features(self, pixel_values: np.ndarray) -> np.ndarray:
        """(tiles, image_seq_len, hidden) features, one tile per encoder run.

        Tiles do not attend to each other, so this equals one batched run; but a batch of 13
        tiles (a 640x480 image at 2048 px) holds ~4 GB of attention scores and runs ~2x slower
        on CPU (memory-bound softmax), while one tile needs ~0.3 GB."""
        tiles = pixel_values.astype(self._pixel_type, copy=False)  # (tiles, 3, H, W)
        pixel_mask = np.ones((1, 1, tiles.shape[2], tiles.shape[3]), dtype=np.bool_)
        features = []
        for index in range(tiles.shape[0]):
            feed = {"pixel_values": tiles[None, index : index + 1], "pixel_attention_mask": pixel_mask}
            features.append(self.vision.run(None, feed)[0])
        return np.concatenate(features)

    def _embed(self, input_ids: np.ndarray) -> np.ndarray:
        return self.embed.run(None, {"input_ids": input_ids})[0].astype(self._embeds_type)

    def _pad(self, sequences: list[list[int]], *, right: bool) -> tuple[np.ndarray, np.ndarray]:
        length = max(len(ids) for ids in sequences)
        input_ids = np.full((len(sequences), length), self.config.pad_token_id, dtype=np.int64)
        attention_mask = np.zeros((len(sequences), length), dtype=np.int64)
        for row, ids in enumerate(sequences):
            where = slice(0, len(ids)) if right else slice(length - len(ids), length)
            input_ids[row, where] = ids
            attention_mask[row, where] = 1
        return input_ids, attention_mask

    def _empty_past(self, batch: int) -> dict[str, np.ndarray]:
        cfg = self.config
        empty = np.zeros((batch, cfg.num_kv_heads, 0, cfg.head_dim), dtype=self._past_type)
        return {f"past_key_values.{i}.{kind}": empty for i in range(cfg.num_layers) for kind in ("key", "value")}

    def _next_feed(self, next_tokens: np.ndarray, finished: list[bool]) -> np.ndarray:
        """Embeddings of the tokens fed back; finished rows keep decoding a pad token (as generate()
        does), their output is ignored."""
        return self._embed(np.where(finished, self.config.pad_token_id, next_tokens).astype(np.int64)[:, None])

    def _greedy(
        self, embeds: np.ndarray, attention_mask: np.ndarray, max_new_tokens: int, limits: list[int]
    ) -> list[list[int]]:
        batch = embeds.shape[0]
        past = self._empty_past(batch)
        # Same as transformers: padding positions get 0, real tokens count from 0.
        position_ids = np.where(attention_mask == 1, np.cumsum(attention_mask, axis=-1) - 1, 0)
        tokens = _Tokens(limits, self.config.eos_token_ids)
        output_names = [node.name for node in self.decoder.get_outputs()]
        for step in range(max_new_tokens):
            if tokens.done:
                break
            feed = {"inputs_embeds": embeds, "attention_mask": attention_mask, "position_ids": position_ids, **past}
            if "use_cache_branch" in self._decoder_inputs:
                feed["use_cache_branch"] = np.array([step > 0])
            outputs = self.decoder.run(output_names, feed)
            next_tokens = outputs[0][:, -1, :].argmax(axis=-1)
            tokens.add(next_tokens)
            if tokens.done or step == max_new_tokens - 1:
                break
            past = _as_past(output_names, outputs)
            embeds = self._next_feed(next_tokens, tokens.finished)
            attention_mask = np.concatenate([attention_mask, np.ones((batch, 1), dtype=np.int64)], axis=1)
            position_ids = position_ids[:, -1:] + 1
        return tokens.generated

    def _greedy_gqa(
        self, embeds: np.ndarray, lengths: np.ndarray, max_new_tokens: int, limits: list[int]
    ) -> list[list[int]]:
        """The loop of the GroupQueryAttention decoder: ``embeds`` right-padded, ``lengths`` the
        real tokens per row. Each row's cache is valid up to its own length (the graph's rotary
        positions and causal window follow ``seqlens_k``), so rows need no mask and no position ids."""
        batch = embeds.shape[0]
        if self.share_kv_buffer:
            run = _SharedKVCache(self.decoder, self.config, batch, embeds.shape[1] + max_new_tokens, self._past_type)
        else:
            run = _GrowingKVCache(self.decoder, self._empty_past(batch))
        totals = lengths.astype(np.int32)  # tokens per row once this step's inputs are in the cache
        tokens = _Tokens(limits, self.config.eos_token_ids)
        for step in range(max_new_tokens):
            if tokens.done:
                break
            # total_sequence_length: the padded prompt length at first (the graph's prompt case),
            # then the longest row's.
            total = embeds.shape[1] if step == 0 else int(totals.max())
            logits = run({"inputs_embeds": embeds, "seqlens_k": totals - 1,
                          "total_sequence_length": np.array(total, dtype=np.int32)})
            next_tokens = logits[:, -1, :].argmax(axis=-1)
            tokens.add(next_tokens)
            if tokens.done or step == max_new_tokens - 1:
                break
            embeds = self._next_feed(next_tokens, tokens.finished)
            totals = totals + 1
        return tokens.generated


class _GrowingKVCache:
    """Runs a step with ``run()``: each step's present.* (cache + new token) is the next past."""

    def __init__(self, session, past: dict[str, np.ndarray]) -> None:
        self.session, self.past = session, past
        self.output_names = [node.name for node in session.get_outputs()]

    def __call__(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        outputs = self.session.run(self.output_names, {**feed, **self.past})
        self.past = _as_past(self.output_names, outputs)
        return outputs[0]


class _SharedKVCache:
    """Runs a step with I/O binding, past.* and present.* bound to one preallocated buffer per
    layer and kind: GroupQueryAttention then writes the new keys/values in place instead of copying
    the whole cache into a new present tensor every step (past_present_share_buffer)."""

    def __init__(self, session, config: SmolVLMConfig, batch: int, capacity: int, dtype) -> None:
        ort = onnxruntime()
        self.session = session
        shape = (batch, config.num_kv_heads, capacity, config.head_dim)
        # Zeroed, not just allocated: rows beyond a sequence's length are never attended to, but
        # uninitialised memory could hold NaNs, and 0 * NaN is NaN.
        self.arrays = {f"{i}.{kind}": np.zeros(shape, dtype=dtype)
                       for i in range(config.num_layers) for kind in ("key", "value")}
        # One binding for the whole caption: the 60 buffers are bound once (rebinding them every
        # step cost ~0.4 ms of Python per token), each step rebinds only its own inputs.
        self.binding = session.io_binding()
        self.binding.bind_output("logits", "cpu")  # first: get_outputs()[0]
        self.buffers = [ort.OrtValue.ortvalue_from_numpy(array) for array in self.arrays.values()]
        for name, buffer in zip(self.arrays, self.buffers):
            self.binding.bind_ortvalue_input(f"past_key_values.{name}", buffer)
            self.binding.bind_ortvalue_output(f"present.{name}", buffer)

    def __call__(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        for name, value in feed.items():
            self.binding.bind_cpu_input(name, value)
        self.session.run_with_iobinding(self.binding)
        return self.binding.get_outputs()[0].numpy()


def _as_past(output_names: list[str], outputs: list[np.ndarray]) -> dict[str, np.ndarray]:
    """The ``present.*`` outputs of a step as the next step's ``past_key_values.*`` inputs."""
    return {
        name.replace("present", "past_key_values", 1): value
        for name, value in zip(output_names, outputs)
        if name.startswith("present")
    }


class _Tokens:
    """Greedy tokens per row: a row is finished at EOS (not kept) or at its own token limit."""

    def __init__(self, limits: list[int], eos_token_ids) -> None:
        self.limits = limits
        self.eos = set(eos_token_ids)
        self.generated: list[list[int]] = [[] for _ in limits]
        self.finished = [limit <= 0 for limit in limits]

    @property
    def done(self) -> bool:
        return all(self.finished)

    def add(self, next_tokens: np.ndarray) -> None:
        for row, token in enumerate(next_tokens.tolist()):
            if self.finished[row]:
                continue
            if token in self.eos:
                self.finished[row] = True
            else:
                self.generated[row].append(token)
                self.finished[row] = len(self.generated[row]) >= self.limits[row]
