"""SmolVLM (Idefics3) captions through our own ONNX Runtime generation loop.

Three community ONNX graphs (``onnx/vision_encoder``, ``onnx/embed_tokens``,
``onnx/decoder_model_merged``) driven like transformers' ``generate(do_sample=False)``:
the image tiles go through the vision encoder, their features replace the ``<image>`` token
embeddings, and the decoder runs greedily with its KV cache. A batch is left-padded; the
attention mask hides the padding and position ids are ``cumsum(mask) - 1``.

Run time needs onnxruntime, tokenizers, numpy and Pillow only.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from memesearch.errors import ModelUnavailableError
from memesearch.ml.base import CaptionRequest, CaptionResult, Captioner
from memesearch.ml.caption_streams import per_stream_batch, threads_per_stream
from memesearch.ml.onnx_runtime.session import open_session
from memesearch.ml.families.smolvlm.assets import (
    ONNX_PARTS,
    SmolVLMConfig,
    dtype_suffix,
    onnx_path,
    required_files,
)
from memesearch.ml.families.smolvlm.preprocess import preprocess_image
from memesearch.ml.families.smolvlm.prompt import clean_caption, model_prompt

__all__ = ["DEFAULT_PROMPT", "OnnxSmolVLMCaptioner", "required_files"]

DEFAULT_PROMPT = "Describe this meme in one or two sentences, including any text it shows."

_ORT_TO_NUMPY = {"tensor(float)": np.float32, "tensor(float16)": np.float16, "tensor(double)": np.float64}


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
        # Quantised activations are scaled per tensor: a batched int8 row would depend on its
        # companions, so those weight types run one meme per batch (and per stream).
        self.batch_size = per_stream_batch(dtype, 4)
        self.streams = max(1, streams)

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
        sessions = {
            part: open_session(self.model_dir / onnx_path(part, self.dtype), threads=threads, low_memory=True)
            for part in ONNX_PARTS
        }
        self.vision = sessions["vision_encoder"]
        self.embed = sessions["embed_tokens"]
        self.decoder = sessions["decoder_model_merged"]
        self._decoder_inputs = {node.name for node in self.decoder.get_inputs()}
        self._pixel_type = _float_type(self.vision, "pixel_values")
        self._embeds_type = _float_type(self.decoder, "inputs_embeds")
        self._past_type = _float_type(self.decoder, "past_key_values.0.key")

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
        input_ids, attention_mask = self._left_pad(prompt_ids)
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

    def _left_pad(self, sequences: list[list[int]]) -> tuple[np.ndarray, np.ndarray]:
        length = max(len(ids) for ids in sequences)
        input_ids = np.full((len(sequences), length), self.config.pad_token_id, dtype=np.int64)
        attention_mask = np.zeros((len(sequences), length), dtype=np.int64)
        for row, ids in enumerate(sequences):
            input_ids[row, length - len(ids) :] = ids
            attention_mask[row, length - len(ids) :] = 1
        return input_ids, attention_mask

    def _greedy(
        self, embeds: np.ndarray, attention_mask: np.ndarray, max_new_tokens: int, limits: list[int]
    ) -> list[list[int]]:
        cfg = self.config
        batch = embeds.shape[0]
        empty = np.zeros((batch, cfg.num_kv_heads, 0, cfg.head_dim), dtype=self._past_type)
        past = {f"past_key_values.{i}.{kind}": empty for i in range(cfg.num_layers) for kind in ("key", "value")}
        # Same as transformers: padding positions get 0, real tokens count from 0.
        position_ids = np.where(attention_mask == 1, np.cumsum(attention_mask, axis=-1) - 1, 0)
        eos = set(cfg.eos_token_ids)
        generated: list[list[int]] = [[] for _ in range(batch)]
        finished = [limit <= 0 for limit in limits]
        output_names = [node.name for node in self.decoder.get_outputs()]
        for step in range(max_new_tokens):
            if all(finished):
                break
            feed = {"inputs_embeds": embeds, "attention_mask": attention_mask, "position_ids": position_ids, **past}
            if "use_cache_branch" in self._decoder_inputs:
                feed["use_cache_branch"] = np.array([step > 0])
            outputs = self.decoder.run(output_names, feed)
            logits = outputs[0][:, -1, :]
            next_tokens = logits.argmax(axis=-1)
            for row, token in enumerate(next_tokens.tolist()):
                if finished[row]:
                    continue
                if token in eos:
                    finished[row] = True
                else:
                    generated[row].append(token)
                    finished[row] = len(generated[row]) >= limits[row]
            if all(finished) or step == max_new_tokens - 1:
                break
            past = {
                name.replace("present", "past_key_values", 1): value
                for name, value in zip(output_names[1:], outputs[1:])
                if name.startswith("present")
            }
            # Finished rows keep decoding a pad token (as generate() does); their output is ignored.
            feed_tokens = np.where(finished, cfg.pad_token_id, next_tokens).astype(np.int64)[:, None]
            embeds = self._embed(feed_tokens)
            attention_mask = np.concatenate([attention_mask, np.ones((batch, 1), dtype=np.int64)], axis=1)
            position_ids = position_ids[:, -1:] + 1
        return generated
