"""The GroupQueryAttention decoder for pulled SmolVLM models, made from the checkpoint without torch.

HuggingFace's community ONNX files carry the traced decoder (~100 nodes a layer; our
decoder_graph.py one decodes about twice as fast, docs/BENCHMARKS.md). So ``models pull``
also fetches the checkpoint's ``model.safetensors`` (same repo and revision) and writes our
graph from its text-model weights next to the community files, as
``onnx/decoder_gqa{suffix}.onnx`` (fp32, int8, q4). The community files are never changed:
the runtime prefers the derived decoder and falls back to the community one, saying why,
when it is absent (``decoder_choice``). A failed derivation leaves a ``.failed.txt`` note
with the reason instead of failing the pull.

Each derived file has a ``.source.json`` record beside it: the recipe version and the sha256 of
the ``config.json`` and ``model.safetensors`` it was made from. A pull that brings another
checkpoint (a new pinned revision, another ``--from`` folder) or a newer recipe derives it
again; until then the runtime, which compares the checkpoint's size and mtime (a stat, no
hashing), runs the community decoder and says why.
"""

from __future__ import annotations

import json
import logging
import struct
import tempfile
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from memesearch.library.hashing import sha256_file
from memesearch.ml.families.smolvlm.assets import dtype_suffix, onnx_path
from memesearch.ml.families.smolvlm.decoder_graph import TextConfig, build_decoder

log = logging.getLogger(__name__)

CHECKPOINT = "model.safetensors"
#: Dtypes with a derived decoder; the others (fp16, ...) keep the community one.
DERIVED_DTYPES = ("fp32", "int8", "q4")
#: Per dtype: bump when the graph derived from the same checkpoint changes (decoder_graph.py, the
#: quantisers): pulls then derive the decoders that an older recipe made again.
RECIPES = {"fp32": 1, "int8": 1, "q4": 1}
#: The int8 decoders a model may ask for (models.yml ``sources.onnx.int8_decoder``): ``per_tensor``
#: (dynamic int8 MatMuls, one activation scale per tensor: fastest alone) or ``per_row`` (8-bit
#: MatMulNBits quantising each row alone: bulk describe decodes memes in batches with the
#: captions they get alone, at a slower prompt run; quantize.quantize_matmuls_8bit_rows).
INT8_DECODERS = ("per_tensor", "per_row")
#: Where Idefics3 checkpoints keep the text model (transformers' save_pretrained writes the first).
TEXT_PREFIXES = ("model.text_model.", "text_model.", "model.language_model.")


class DerivationError(ValueError):
    """The checkpoint cannot give a GroupQueryAttention decoder."""


def gqa_decoder_file(dtype: str) -> str:
    return f"onnx/decoder_gqa{dtype_suffix(dtype)}.onnx"


def failure_note_file(dtype: str) -> str:
    return gqa_decoder_file(dtype).removesuffix(".onnx") + ".failed.txt"


def source_record_file(dtype: str) -> str:
    return gqa_decoder_file(dtype).removesuffix(".onnx") + ".source.json"


def _read_record(model_dir: Path, dtype: str) -> dict:
    try:
        record = json.loads((model_dir / source_record_file(dtype)).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def _current_source(model_dir: Path, known: dict, dtype: str, int8_decoder: str) -> dict:
    """The record of what a decoder derived now is made from; the checkpoint is hashed only when
    its size or mtime differ from ``known``'s (a re-pull of the same files costs a stat)."""
    stat = (model_dir / CHECKPOINT).stat()
    seen = known.get("checkpoint") or {}
    unchanged = seen.get("size") == stat.st_size and seen.get("mtime_ns") == stat.st_mtime_ns and seen.get("sha256")
    record = {"recipe": RECIPES[dtype], "config_sha256": sha256_file(model_dir / "config.json"),
              "checkpoint": {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns,
                             "sha256": seen["sha256"] if unchanged else sha256_file(model_dir / CHECKPOINT)}}
    if dtype == "int8" and int8_decoder != "per_tensor":  # records before the choice existed are per_tensor
        record["int8_decoder"] = int8_decoder
    return record


def _mismatch(record: dict, current: dict) -> str | None:
    """Why a decoder derived per ``record`` is not what ``current``'s files give, or None."""
    if not record:
        return "has no record of the checkpoint it was made from"
    if record.get("recipe") != current["recipe"]:
        return f"was made by derivation recipe {record.get('recipe')}, this memesearch uses {current['recipe']}"
    if record.get("config_sha256") != current["config_sha256"]:
        return "was made from another config.json"
    if (record.get("checkpoint") or {}).get("sha256") != current["checkpoint"]["sha256"]:
        return f"was made from another {CHECKPOINT}"
    made, wanted = record.get("int8_decoder", "per_tensor"), current.get("int8_decoder", "per_tensor")
    if made != wanted:
        return f"is the {made} int8 decoder, models.yml asks for {wanted}"
    return None


def _stale_at_run_time(model_dir: Path, dtype: str) -> str | None:
    """The runtime's check of a derived decoder, without hashing the checkpoint: a size or mtime
    other than the record's counts as another checkpoint (the next pull hashes it to be sure)."""
    record = _read_record(model_dir, dtype)
    seen = record.get("checkpoint") or {}
    checkpoint, config = model_dir / CHECKPOINT, model_dir / "config.json"
    # A checkpoint deleted after the pull (to save space) leaves the derived decoder standing alone.
    stat = checkpoint.stat() if checkpoint.is_file() else None
    same = stat is None or (seen.get("size"), seen.get("mtime_ns")) == (stat.st_size, stat.st_mtime_ns)
    current = {"recipe": RECIPES[dtype], "config_sha256": sha256_file(config) if config.is_file() else record.get("config_sha256"),
               "checkpoint": {"sha256": seen.get("sha256") if same else None}}
    # Either int8 decoder runs (the captioner reads from the graph whether it may batch); only a
    # pull makes the one models.yml asks for.
    if "int8_decoder" in record:
        current["int8_decoder"] = record["int8_decoder"]
    return _mismatch(record, current)


def checkpoint_files(dtype: str) -> list[str]:
    """Extra files a pull fetches for ``dtype``: optional, the community files run without them."""
    return [CHECKPOINT] if dtype in DERIVED_DTYPES else []


class TextWeights(Mapping):
    """The checkpoint's text-model weights named as build_decoder wants them (``layers.0...``,
    ``norm.weight``) plus ``lm_head.weight`` (the input embeddings when the checkpoint ties them
    and stores no lm_head), each read as float32 only when asked for: the graph then holds the
    one full copy (reading them all first peaked at 2.5 GB for 256M, int8; now 1.8 GB).

    numpy has no bfloat16, so ``safe_open(framework="np")`` refuses BF16 tensors: their raw 16
    bits are read at the offsets the file's header gives and shifted into the top half of a
    float32, which is exact."""

    def __init__(self, path: Path) -> None:
        from safetensors import safe_open

        self.path = Path(path)
        self._handle = safe_open(str(self.path), framework="np")
        keys = list(self._handle.keys())
        prefix = next((p for p in TEXT_PREFIXES if f"{p}norm.weight" in keys), None)
        if prefix is None:
            names = " / ".join(p + "norm.weight" for p in TEXT_PREFIXES)
            raise DerivationError(f"{self.path.name} holds no text model (no {names})")
        self._keys = {key[len(prefix):]: key for key in keys
                      if key.startswith(prefix) and not key.endswith("embed_tokens.weight")}
        self._keys["lm_head.weight"] = "lm_head.weight" if "lm_head.weight" in keys else f"{prefix}embed_tokens.weight"
        with open(self.path, "rb") as file:  # the format: u64 header size, JSON header, data
            self._header_size = struct.unpack("<Q", file.read(8))[0]
            self._header = json.loads(file.read(self._header_size))

    def __getitem__(self, name: str) -> np.ndarray:
        key = self._keys[name]
        if self._handle.get_slice(key).get_dtype() != "BF16":
            return np.asarray(self._handle.get_tensor(key), dtype=np.float32)
        entry = self._header[key]
        start, end = entry["data_offsets"]
        with open(self.path, "rb") as file:
            file.seek(8 + self._header_size + start)
            bits = np.frombuffer(file.read(end - start), dtype="<u2").astype(np.uint32) << 16
        return bits.view(np.float32).reshape(entry["shape"])

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._handle.get_slice(self._keys[name]).get_shape())

    def __iter__(self):
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)


def _check_shapes(weights: TextWeights, text) -> None:
    expected = {"self_attn.q_proj.weight": (text.heads * text.head_dim, text.hidden),
                "self_attn.k_proj.weight": (text.kv_heads * text.head_dim, text.hidden)}
    for layer in range(text.layers):
        for name, shape in expected.items():
            key = f"layers.{layer}.{name}"
            if key not in weights:
                raise DerivationError(f"the checkpoint has no {key}")
            if weights.shape(key) != shape:
                raise DerivationError(f"{key} is {weights.shape(key)}, config.json says {shape}")
    if weights.shape("lm_head.weight")[1] != text.hidden:
        raise DerivationError(f"lm_head.weight is {weights.shape('lm_head.weight')}, hidden size {text.hidden}")


def derive(model_dir: Path, dtype: str, int8_decoder: str = "per_tensor") -> Path:
    """Write ``gqa_decoder_file(dtype)`` from ``model.safetensors`` + ``config.json`` (atomically),
    unless it is already derived from these files by this recipe (and, for int8, as the
    ``int8_decoder`` asked for: ``INT8_DECODERS``); then its source record."""
    import onnx

    from memesearch.ml.onnx_runtime.quantize import (
        derive_once,
        quantize_matmuls,
        quantize_matmuls_4bit,
        quantize_matmuls_8bit_rows,
        write_atomically,
    )

    if dtype not in DERIVED_DTYPES:
        raise DerivationError(f"no GroupQueryAttention decoder for dtype {dtype}")
    if int8_decoder not in INT8_DECODERS:
        raise DerivationError(f"int8_decoder {int8_decoder!r} is not one of {', '.join(INT8_DECODERS)}")
    model_dir = Path(model_dir)
    target = model_dir / gqa_decoder_file(dtype)
    record_path = model_dir / source_record_file(dtype)
    try:
        known = _read_record(model_dir, dtype)
        current = _current_source(model_dir, known, dtype, int8_decoder)
    except OSError as exc:
        raise DerivationError(str(exc)) from exc
    stale = _mismatch(known, current) if target.is_file() else None
    if stale:
        log.info("%s %s: deriving it again", gqa_decoder_file(dtype), stale)
        # The record goes first: a crash in between leaves a decoder without a record, which
        # neither the runtime nor the next pull trusts.
        record_path.unlink(missing_ok=True)
        target.unlink(missing_ok=True)

    def write(partial: str) -> None:
        try:
            config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
            text = TextConfig.from_config(config["text_config"])
        except (OSError, ValueError, KeyError) as exc:
            raise DerivationError(f"config.json: {exc}") from exc
        weights = TextWeights(model_dir / CHECKPOINT)
        _check_shapes(weights, text)
        graph = build_decoder(weights, text)
        if dtype == "fp32":
            onnx.save(graph, partial)
            return
        # The quantisers read a file: the fp32 graph goes to a scratch file beside the target
        # (the models folder has room for it; /tmp may not).
        with tempfile.TemporaryDirectory(dir=target.parent, prefix=".gqa-") as scratch:
            fp32 = Path(scratch) / "decoder_gqa.onnx"
            onnx.save(graph, str(fp32))
            del graph, weights
            quantise = {"int8": quantize_matmuls_8bit_rows if int8_decoder == "per_row" else quantize_matmuls,
                        "q4": quantize_matmuls_4bit}[dtype]
            quantise(fp32, partial)

    derive_once(target, write)
    if current != known:
        write_atomically(record_path, lambda partial: Path(partial).write_text(json.dumps(current), encoding="utf-8"))
    return target


def after_pull(model_dir: Path, dtype: str, options=None) -> None:
    """Derive the decoder after a pull (``options``: the model's models.yml ONNX source, whose
    ``int8_decoder`` says which int8 decoder); never raises (the community files work without it).
    A failure is kept as a note that ``decoder_choice`` (the runtime, the pull's status) reports."""
    model_dir = Path(model_dir)
    if dtype not in DERIVED_DTYPES or not (model_dir / CHECKPOINT).is_file():
        return
    note = model_dir / failure_note_file(dtype)
    try:
        derive(model_dir, dtype, getattr(options, "int8_decoder", "per_tensor"))
    except Exception as exc:  # any failure (a broken file, an unsupported model, a full disk): the pull still works
        reason = f"deriving {gqa_decoder_file(dtype)} from {CHECKPOINT} failed: {exc}"
        log.warning("%s; the community decoder runs instead", reason)
        try:
            note.write_text(reason + "\n", encoding="utf-8")
        except OSError:  # a full or read-only disk: the log line is all there is
            pass
    else:
        note.unlink(missing_ok=True)


def decoder_choice(model_dir: Path, dtype: str) -> tuple[str, str | None]:
    """The decoder file the runtime runs for ``dtype`` and, for the community one, why."""
    model_dir = Path(model_dir)
    if dtype not in DERIVED_DTYPES:
        return onnx_path("decoder_model_merged", dtype), f"no GroupQueryAttention decoder is derived for {dtype}"
    pull = f"`memesearch models pull {model_dir.name} --dtype {dtype}`"
    if (model_dir / gqa_decoder_file(dtype)).is_file():
        stale = _stale_at_run_time(model_dir, dtype)
        if stale is None:
            return gqa_decoder_file(dtype), None
        return onnx_path("decoder_model_merged", dtype), f"{gqa_decoder_file(dtype)} {stale} ({pull} derives it again)"
    note = model_dir / failure_note_file(dtype)
    if note.is_file():
        reason = note.read_text(encoding="utf-8").strip() + f" (delete {CHECKPOINT} and run {pull} to retry)"
    elif not (model_dir / CHECKPOINT).is_file():
        reason = f"{CHECKPOINT} is not downloaded ({pull} fetches it and derives the faster decoder)"
    else:
        reason = f"{gqa_decoder_file(dtype)} is not derived yet ({pull} derives it)"
    return onnx_path("decoder_model_merged", dtype), reason


def decoder_line(model_dir: Path, dtype: str, options=None) -> str:
    """One line for people: which decoder this dtype runs, and for int8 which kind (``options``:
    the model's models.yml ONNX source; a pull makes the kind it asks for)."""
    path, reason = decoder_choice(model_dir, dtype)
    if reason is not None:
        return f"decoder: community ({path}): {reason}"
    line = f"decoder: GroupQueryAttention ({path})"
    if dtype != "int8":
        return line
    made = _read_record(Path(model_dir), dtype).get("int8_decoder", "per_tensor")
    line += ", " + ("per-row int8: describe batches memes" if made == "per_row" else "per-tensor int8")
    wanted = getattr(options, "int8_decoder", made)
    if wanted != made:
        line += f" (models.yml asks for {wanted}: `memesearch models pull {Path(model_dir).name}` derives it)"
    return line
