"""Moondream 2 captions from the moondream 0.0.x ONNX ``.mf`` bundles, with our own code.

The bundles (``moondream-0_5b-int8.mf.gz``, ``moondream-0_5b-int4.mf.gz``,
``moondream-2b-int8.mf.gz``, ``moondream-2b-int4.mf.gz``) live on the ``onnx`` branch of
https://huggingface.co/vikhyatk/moondream2, commit 9dddae84d54db4ac56fe37817aeaeb502ed083e2
(the URL the moondream README used at the 0.5B release). They were written for the PyPI
client moondream 0.0.3-0.0.6 (``OnnxVL``); its later versions dropped local ONNX inference.

What we reproduce, read from that client (``onnx_vl.py``, ``preprocess.py``,
``moonfile.py`` in the 0.0.6 wheel; the same files are under ``clients/python/moondream/``
in https://github.com/vikhyat/moondream) and cross-checked against the independent Rust
port in jamjamjon/usls (``models/moondream2``) and a write-up of the 0.5B bundle's
contents (initial_kv_cache float16 (24, 2, 1, 16, 1, 64), logits (1, 51200)):

* graphs: ``vision_encoder`` input ``input`` (crops, 3, 378, 378) float16 -> (crops,
  729, C); ``vision_projection`` ``input`` (1, 729, 2C) -> (1, 729, D); ``text_encoder``
  ``input_ids`` (1, n) int64 -> (1, n, D); ``text_decoder`` inputs ``input_embeds``
  (1, n, D) and ``kv_cache`` (layers, 2, 1, heads, past, head_dim), outputs ``hidden``,
  ``new_kv_cache`` (the n new positions) and ``logits`` (1, vocab) of the last position;
* the image prefix: ``initial_kv_cache`` (the BOS token's cache) + the projected image
  run once through the decoder; the caption/query prompt comes from ``config.json``
  ``templates`` (``caption.short``/``caption.normal`` token ids, or ``query.prefix`` +
  the question's ids + ``query.suffix``);
* greedy decoding: argmax of ``logits``, stop on ``special_tokens.eos`` (50256, i.e.
  ``<|endoftext|>``) or after ``max_new_tokens``; the client's cache holds 2048
  positions, so generation also stops there.

Unlike the client we decode the whole id list at once (per-token decoding splits
multi-byte characters) and strip the leading space the model emits. The crop size is
read from the vision encoder's static input shape (378 in the real bundles), which lets
the tiny test model use smaller crops. The client's tile-indexing quirk is kept (see
memesearch/ml/families/moondream/preprocess.py). During development this captioner was run
side by side with the moondream 0.0.6 wheel's ``OnnxVL`` on a tiny bundle with 378-px
crops: identical crops (bit for bit) and identical tokens for all four tile layouts and
both templates (caption and query).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from memesearch.errors import ModelUnavailableError
from memesearch.ml.base import CaptionRequest, CaptionResult, Captioner
from memesearch.ml.families.moondream.bundle import MoondreamBundle, read_bundle
from memesearch.ml.families.moondream.preprocess import CROP_SIZE, make_crops, merge_crop_features

__all__ = ["DEFAULT_PROMPT", "MoondreamBundle", "OnnxMoondreamCaptioner", "read_bundle", "required_files"]

#: A caption length of the bundle's templates; any other prompt is asked as a question.
DEFAULT_PROMPT = "short"
CAPTION_LENGTHS = ("short", "normal")
#: Positions in the client's KV buffer (Moondream 2's context length).
MAX_CONTEXT = 2048
BUNDLE_DTYPES = ("int8", "int4")
BUNDLE_VARIANTS = ("0_5b", "2b")


def bundle_name(dtype: str, variant: str) -> str:
    return f"moondream-{variant}-{dtype}.mf"


def required_files(dtype: str = "int8", variant: str = "0_5b") -> list[str]:
    """The file to download for a dtype: one gzipped bundle holds every component."""
    if dtype not in BUNDLE_DTYPES or variant not in BUNDLE_VARIANTS:
        raise ModelUnavailableError(
            f"moondream bundles exist for dtypes {BUNDLE_DTYPES} and sizes {BUNDLE_VARIANTS}, "
            f"not dtype={dtype!r} size={variant!r}",
            hint=f"use one of: {', '.join(BUNDLE_DTYPES)}",
        )
    return [bundle_name(dtype, variant) + ".gz"]


def find_bundle(model_path: Path, dtype: str) -> Path:
    """``model_path`` itself if it is a file, else the bundle of that dtype inside it."""
    if model_path.is_file():
        return model_path
    if not model_path.is_dir():
        raise ModelUnavailableError(
            f"moondream bundle not found: {model_path}",
            hint=f"download {required_files(dtype)[0] if dtype in BUNDLE_DTYPES else 'a .mf bundle'} "
            "with `memesearch models pull moondream2`",
        )
    # Prefer an already gunzipped bundle (faster to load), then the small model.
    for suffix in (".mf", ".mf.gz"):
        candidates = sorted(model_path.glob(f"moondream-*-{dtype}{suffix}"))
        if candidates:
            return candidates[0]
    present = sorted(p.name for p in model_path.iterdir())
    raise ModelUnavailableError(
        f"no moondream-*-{dtype}.mf(.gz) bundle in {model_path} (found: {present[:10]})",
        hint="download e.g. moondream-0_5b-int8.mf.gz from the `onnx` branch of vikhyatk/moondream2 into that folder",
    )


def _open_session(name: str, model_bytes: bytes, threads: int | None, bundle_path: Path):
    """Like memesearch.ml.onnx_runtime.session.open_session, but for a graph held in memory."""
    from memesearch.ml.onnx_runtime.session import onnxruntime, session_options

    ort = onnxruntime()
    options = session_options(ort, threads)
    # A graph loaded from bytes resolves external weight files against the working directory;
    # over-2-GiB graphs (an fp32 2B decoder) keep their weights beside the bundle instead.
    options.add_session_config_entry("session.model_external_initializers_file_folder_path", str(bundle_path.parent))
    try:
        return ort.InferenceSession(model_bytes, options, providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ModelUnavailableError(
            f"moondream bundle {bundle_path}: graph {name!r} cannot be loaded: {exc}",
            hint="the bundle is truncated or corrupt; download it again (`memesearch models pull`)",
        ) from exc


_ORT_TYPES = {"tensor(float16)": np.float16, "tensor(float)": np.float32, "tensor(int64)": np.int64,
              "tensor(int32)": np.int32}


def _input_dtype(session, name: str, default):
    for node in session.get_inputs():
        if node.name == name:
            return _ORT_TYPES.get(node.type, default)
    return default


class OnnxMoondreamCaptioner(Captioner):
    backend = "onnx"
    batch_size = 1  # the bundles' KV cache has a batch dimension of 1

    def __init__(self, model_path: Path | str, *, dtype: str = "int8", threads: int | None = None) -> None:
        super().__init__()
        self.model_path = Path(model_path)
        self.dtype = dtype
        self.threads = threads
        self.model_id = f"moondream:{self.model_path.name}"

    def _load(self) -> None:
        from tokenizers import Tokenizer

        bundle = read_bundle(find_bundle(self.model_path, self.dtype))
        self.bundle_path = bundle.path
        sessions = {name: _open_session(name, data, self.threads, bundle.path)
                    for name, data in bundle.graphs.items() if not name.startswith(("coord_", "size_"))}
        self.vision_encoder = sessions["vision_encoder"]
        self.vision_projection = sessions["vision_projection"]
        self.text_encoder = sessions["text_encoder"]
        self.text_decoder = sessions["text_decoder"]
        try:
            self.tokenizer = Tokenizer.from_str(bundle.tokenizer_json)
        except Exception as exc:
            raise ModelUnavailableError(f"moondream bundle {bundle.path}: tokenizer.json unusable: {exc}") from exc
        self.initial_kv_cache = bundle.initial_kv_cache
        self.eos_id = bundle.eos_id
        self.templates = bundle.templates
        shape = self.vision_encoder.get_inputs()[0].shape
        self.crop_size = shape[-1] if isinstance(shape[-1], int) else CROP_SIZE
        self._pixel_dtype = _input_dtype(self.vision_encoder, "input", np.float16)
        self._ids_dtype = _input_dtype(self.text_encoder, "input_ids", np.int64)

    # -- the pieces, public so tests and benchmarks can look at each step -----------
    def prompt_ids(self, prompt: str) -> list[int]:
        """Caption template for "short"/"normal", else the query template around the question."""
        self.ensure_loaded()
        prompt = prompt or DEFAULT_PROMPT
        if prompt in CAPTION_LENGTHS:
            if prompt not in self.templates.get("caption", {}):
                raise ModelUnavailableError(f"this moondream bundle has no {prompt!r} caption template")
            return list(self.templates["caption"][prompt])
        query = self.templates.get("query")
        if not query:
            raise ModelUnavailableError("this moondream bundle has no query template; use prompt 'short' or 'normal'")
        return list(query["prefix"]) + self.tokenizer.encode(prompt).ids + list(query["suffix"])

    def encode_image(self, image) -> tuple[np.ndarray, int]:
        """KV cache after BOS + image tokens, and its length."""
        self.ensure_loaded()
        crops, grid = make_crops(image, self.crop_size)
        (features,) = self.vision_encoder.run(None, {"input": crops.astype(self._pixel_dtype, copy=False)})
        merged = merge_crop_features(features, grid)[np.newaxis]
        (image_embeds,) = self.vision_projection.run(None, {"input": merged})
        (image_kv,) = self.text_decoder.run(
            ["new_kv_cache"], {"input_embeds": image_embeds, "kv_cache": self.initial_kv_cache}
        )
        kv_cache = np.concatenate([self.initial_kv_cache, image_kv], axis=-2)
        return kv_cache, kv_cache.shape[-2]

    def _embed(self, ids: list[int]) -> np.ndarray:
        (embeds,) = self.text_encoder.run(None, {"input_ids": np.asarray([ids], dtype=self._ids_dtype)})
        return embeds

    def generate(self, image, prompt: str, max_new_tokens: int) -> list[int]:
        """Greedy token ids after the prompt, without EOS."""
        prompt_ids = self.prompt_ids(prompt)
        image_kv, position = self.encode_image(image)
        # Room for the prompt and every token fed back, within the model's context.
        capacity = max(min(MAX_CONTEXT, position + len(prompt_ids) + max_new_tokens), position + len(prompt_ids))
        cache = np.zeros(image_kv.shape[:-2] + (capacity, image_kv.shape[-1]), dtype=image_kv.dtype)
        cache[..., :position, :] = image_kv
        embeds, generated = self._embed(prompt_ids), []
        while len(generated) < max_new_tokens and position + embeds.shape[-2] <= capacity:
            logits, new_kv = self.text_decoder.run(
                ["logits", "new_kv_cache"], {"input_embeds": embeds, "kv_cache": cache[..., :position, :]}
            )
            cache[..., position : position + embeds.shape[-2], :] = new_kv
            position += embeds.shape[-2]
            token = int(np.argmax(logits, axis=-1).reshape(-1)[0])
            if token == self.eos_id:
                break
            generated.append(token)
            embeds = self._embed([token])
        return generated

    def _caption_batch(self, requests: list[CaptionRequest]) -> list[CaptionResult]:
        results = []
        for request in requests:
            ids = self.generate(request.image, request.prompt, request.max_new_tokens)
            results.append(CaptionResult(text=self.tokenizer.decode(ids).strip(), token_ids=ids))
        return results
