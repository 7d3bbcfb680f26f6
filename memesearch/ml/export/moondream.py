"""Writing moondream ``.mf`` bundles, and exporting our torch Moondream modules into one.

``write_bundle`` produces the container read by memesearch.ml.onnx.moondream_bundle
(magic ``MOON``, version 1, then big-endian uint32 name length / name / uint64 size /
bytes per entry; gzipped when the name ends in ``.gz``).

``export`` turns a checkpoint of the tiny Moondream (memesearch.ml.tiny.moondream) into
bundles with the real component names, inputs and outputs. The real Moondream weights
are only published as finished bundles (no torch checkpoint of that layout exists), so
there is nothing else to export: users download ``moondream-*-int8.mf.gz`` instead.
"""

from __future__ import annotations

import gzip
import io
import json
import struct
import tempfile
import warnings
from pathlib import Path

import numpy as np

from memesearch.errors import require
from memesearch.ml.onnx.moondream_bundle import FORMAT_VERSION, MAGIC

#: Graph interfaces of the real bundles (output names the client reads; others are ours).
_ONNX_SPECS = {
    # name: (input names, output names, dynamic axes)
    "vision_encoder": (["input"], ["output"], {"input": {0: "crops"}, "output": {0: "crops"}}),
    "vision_projection": (["input"], ["output"], {}),
    "text_encoder": (["input_ids"], ["input_embeds"], {"input_ids": {1: "seq"}, "input_embeds": {1: "seq"}}),
    "text_decoder": (
        ["input_embeds", "kv_cache"],
        ["hidden", "new_kv_cache", "logits"],
        {"input_embeds": {1: "seq"}, "kv_cache": {4: "past"}, "hidden": {1: "seq"}, "new_kv_cache": {4: "seq"}},
    ),
}


def _as_bytes(value) -> bytes:
    if isinstance(value, (bytes, bytearray)):
        return bytes(value)
    if isinstance(value, Path):
        return value.read_bytes()
    if isinstance(value, str):
        return value.encode("utf-8")
    if isinstance(value, np.ndarray):
        buffer = io.BytesIO()
        np.save(buffer, value, allow_pickle=False)
        return buffer.getvalue()
    if isinstance(value, dict):
        return json.dumps(value).encode("utf-8")
    raise TypeError(f"cannot store a {type(value).__name__} in a bundle")


def write_bundle(components: dict, out_path: Path | str) -> Path:
    """Write entries (file name -> bytes, str, Path, numpy array or JSON dict) as a ``.mf``."""
    out_path = Path(out_path)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    opener = gzip.open if out_path.name.endswith(".gz") else open
    with opener(out_path, "wb") as stream:
        stream.write(MAGIC + bytes([FORMAT_VERSION]))
        for name, value in components.items():
            encoded_name, data = name.encode("utf-8"), _as_bytes(value)
            stream.write(struct.pack(">I", len(encoded_name)) + encoded_name)
            stream.write(struct.pack(">Q", len(data)))
            stream.write(data)
    return out_path


def _example_inputs(name: str, cfg: dict):
    torch = require("torch", extra="export", purpose="Exporting Moondream to ONNX")
    heads = cfg["text_heads"]
    if name == "vision_encoder":
        return (torch.randn(2, 3, cfg["crop_size"], cfg["crop_size"]).half(),)
    if name == "vision_projection":
        tokens = (cfg["crop_size"] // cfg["patch"]) ** 2
        return (torch.randn(1, tokens, 2 * cfg["vision_dim"]).half(),)
    if name == "text_encoder":
        return (torch.tensor([[1, 2, 3]]),)
    kv = torch.randn(cfg["text_layers"], 2, 1, heads, 5, cfg["text_dim"] // heads).half()
    return (torch.randn(1, 3, cfg["text_dim"]).half(), kv)


def export_graphs(modules, cfg: dict) -> dict[str, bytes]:
    """torch.onnx.export (TorchScript exporter) of each component, as serialized bytes."""
    torch = require("torch", extra="export", purpose="Exporting Moondream to ONNX")
    graphs = {}
    with tempfile.TemporaryDirectory() as scratch:
        for name, (inputs, outputs, dynamic) in _ONNX_SPECS.items():
            target = Path(scratch) / f"{name}.onnx"
            # The TorchScript exporter is deprecated but is what reliably keeps the past length
            # of the KV cache symbolic here; its deprecation notice is noise for callers.
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DeprecationWarning)
                torch.onnx.export(modules[name], _example_inputs(name, cfg), str(target), dynamo=False,
                                  input_names=inputs, output_names=outputs, dynamic_axes=dynamic, opset_version=17)
            graphs[name] = target.read_bytes()
    return graphs


def quantize_graph(model_bytes: bytes) -> bytes:
    """Dynamic int8 quantisation of the MatMul weights (what the real int8 bundles use)."""
    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory() as scratch:
        source, target = Path(scratch) / "in.onnx", Path(scratch) / "out.onnx"
        source.write_bytes(model_bytes)
        quantize_dynamic(source, target, op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8)
        return target.read_bytes()


def export(checkpoint_dir: Path, out_dir: Path, *, int8: bool = False) -> Path:
    """Tiny checkpoint -> ``moondream-tiny-fp32.mf`` (+ ``moondream-tiny-int8.mf``) in out_dir."""
    from memesearch.ml.tiny.moondream import initial_kv_cache, load_tiny_model

    checkpoint_dir, out_dir = Path(checkpoint_dir), Path(out_dir)
    modules, _, config, cfg = load_tiny_model(checkpoint_dir)
    graphs = export_graphs(modules, cfg)
    shared = {
        "tokenizer.json": (checkpoint_dir / "tokenizer.json").read_bytes(),
        "initial_kv_cache.npy": initial_kv_cache(modules, config["special_tokens"]["bos"]).numpy(),
        "config.json": config,
    }
    write_bundle({f"{name}.onnx": data for name, data in graphs.items()} | shared, out_dir / "moondream-tiny-fp32.mf")
    if int8:
        quantized = {f"{name}.onnx": quantize_graph(data) for name, data in graphs.items()}
        write_bundle(quantized | shared, out_dir / "moondream-tiny-int8.mf")
    return out_dir
