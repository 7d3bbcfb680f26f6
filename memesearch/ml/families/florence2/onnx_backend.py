"""Florence-2 (base / large) captioning and OCR on onnxruntime, with our own generation loop.

Reads the files of ``onnx-community/Florence-2-base(-ft)`` / ``-large(-ft)`` as
downloaded: ``onnx/vision_encoder{suffix}.onnx`` (pixels -> image features),
``onnx/embed_tokens{suffix}.onnx`` (ids -> embeddings), ``onnx/encoder_model{suffix}.onnx``
(BART encoder over [image features, <s> prompt </s>]) and
``onnx/decoder_model_merged{suffix}.onnx`` (decoder with a ``use_cache_branch`` switch),
plus tokenizer.json and the JSON configs. Runtime needs onnxruntime, tokenizers,
numpy and Pillow only.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from memesearch.errors import ModelUnavailableError
from memesearch.ml.base import CaptionRequest, CaptionResult, Captioner
from memesearch.ml.families.florence2.decode import (
    DecodeSettings,
    MergedDecoder,
    caption_by_limit,
    greedy_generate,
    strip_sequence,
)
from memesearch.ml.families.florence2.inputs import (
    ImageSettings,
    clean_text,
    construct_prompt,
    preprocess_images,
)
from memesearch.ml.onnx_runtime import community_files
from memesearch.ml.onnx_runtime.session import open_session

DEFAULT_PROMPT = "<MORE_DETAILED_CAPTION>"
COMPONENTS = ("vision_encoder", "embed_tokens", "encoder_model", "decoder_model_merged")
CONFIG_FILES = ("config.json", "generation_config.json", "preprocessor_config.json", "tokenizer.json")


def onnx_file(component: str, dtype: str) -> str:
    return community_files.onnx_file(component, dtype, "Florence-2")


def required_files(dtype: str) -> list[str]:
    """Relative paths of every file the runtime reads for ``dtype``."""
    return [onnx_file(component, dtype) for component in COMPONENTS] + list(CONFIG_FILES)


def _text_config(model_dir: Path) -> dict:
    path = model_dir / "config.json"
    if not path.is_file():
        raise ModelUnavailableError(f"Florence-2 config not found: {path}")
    config = json.loads(path.read_text())
    return config.get("text_config") or config


class OnnxFlorence2Captioner(Captioner):
    backend = "onnx"
    batch_size = 4

    def __init__(self, model_dir: Path, *, dtype: str = "fp32", threads: int | None = None) -> None:
        super().__init__()
        self.model_dir = Path(model_dir)
        self.dtype = dtype
        self.threads = threads
        self.model_id = f"florence2:{self.model_dir.name}"
        required_files(dtype)  # validates the dtype early

    def _load(self) -> None:
        import tokenizers  # a core dependency, like onnxruntime

        missing = [name for name in required_files(self.dtype) if not (self.model_dir / name).is_file()]
        if missing:
            raise ModelUnavailableError(
                f"Florence-2 files missing in {self.model_dir}: {', '.join(missing)}",
                hint="download them with `memesearch models pull` or place them there by hand",
            )
        sessions = {
            component: open_session(self.model_dir / onnx_file(component, self.dtype), threads=self.threads,
                                    low_memory=True)
            for component in COMPONENTS
        }
        self._vision = sessions["vision_encoder"]
        self._embed = sessions["embed_tokens"]
        self._encoder = sessions["encoder_model"]
        text_config = _text_config(self.model_dir)
        heads = int(text_config.get("decoder_attention_heads", 12))
        self._decoder = MergedDecoder(
            sessions["decoder_model_merged"],
            self._embed,
            num_heads=heads,
            head_dim=int(text_config.get("d_model", 768)) // heads,
        )
        self._tokenizer = tokenizers.Tokenizer.from_file(str(self.model_dir / "tokenizer.json"))
        self._image_settings = ImageSettings.from_model_dir(self.model_dir)
        self._decode_settings = DecodeSettings.from_model_dir(self.model_dir)

    # -- inputs -----------------------------------------------------------------

    def prompt_ids(self, prompt: str) -> list[int]:
        """``<s> sentence </s>`` ids, as the processor builds after the image tokens."""
        self.ensure_loaded()
        sentence = construct_prompt(prompt)
        body = self._tokenizer.encode(sentence, add_special_tokens=False).ids
        bos = self._tokenizer.token_to_id("<s>")
        eos = self._tokenizer.token_to_id("</s>")
        return [bos, *body, eos]

    def pixel_values(self, images) -> np.ndarray:
        self.ensure_loaded()
        return preprocess_images(list(images), self._image_settings)

    def encode(self, requests: list[CaptionRequest]) -> tuple[np.ndarray, np.ndarray]:
        """Encoder states and mask for [image features, prompt]; prompts right-padded like the processor."""
        pixels = self.pixel_values([request.image for request in requests])
        pixels = pixels.astype(_input_dtype(self._vision, "pixel_values"))
        image_features = self._vision.run(None, {"pixel_values": pixels})[0]
        prompts = [self.prompt_ids(request.prompt) for request in requests]
        length = max(len(ids) for ids in prompts)
        pad = self._decode_settings.pad_token_id
        ids = np.array([p + [pad] * (length - len(p)) for p in prompts], dtype=np.int64)
        text_mask = np.array([[1] * len(p) + [0] * (length - len(p)) for p in prompts], dtype=np.int64)
        text_embeds = self._embed.run(None, {"input_ids": ids})[0]
        embeds = np.concatenate([image_features.astype(text_embeds.dtype), text_embeds], axis=1)
        embeds = embeds.astype(_input_dtype(self._encoder, "inputs_embeds"))
        image_mask = np.ones(image_features.shape[:2], dtype=np.int64)
        mask = np.concatenate([image_mask, text_mask], axis=1)
        hidden = self._encoder.run(None, {"inputs_embeds": embeds, "attention_mask": mask})[0]
        return hidden, mask

    # -- generation ---------------------------------------------------------------

    def generate_ids(self, requests: list[CaptionRequest], max_new_tokens: int) -> list[list[int]]:
        """Generated text ids per request (no start token, forced BOS or EOS)."""
        hidden, mask = self.encode(requests)
        sequences = greedy_generate(self._decoder, hidden, mask, self._decode_settings, max_new_tokens)
        return [strip_sequence(sequence, self._decode_settings) for sequence in sequences]

    def decode(self, token_ids: list[int]) -> str:
        return clean_text(self._tokenizer.decode(token_ids, skip_special_tokens=False))

    def _caption_batch(self, requests: list[CaptionRequest]) -> list[CaptionResult]:
        return caption_by_limit(requests, self.generate_ids, self.decode)


def _input_dtype(session, name: str):
    kinds = {item.name: item.type for item in session.get_inputs()}
    return np.float16 if kinds.get(name) == "tensor(float16)" else np.float32
