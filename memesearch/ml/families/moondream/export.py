"""Writing moondream ``.mf`` bundles, and exporting our torch Moondream modules into one.

``write_bundle`` produces the container read by memesearch.ml.families.moondream.bundle
(magic ``MOON``, version 1, then big-endian uint32 name length / name / uint64 size /
bytes per entry; gzipped when the name ends in ``.gz``).

``export`` turns a checkpoint of our torch Moondream (memesearch.ml.families.moondream.tiny: the
tiny test model, or the full-size random one the benchmarks use) into bundles with the
real component names, inputs and outputs. The real Moondream weights
are only published as finished bundles (no torch checkpoint of that layout exists), so
there is nothing else to export: users download ``moondream-*-int8.mf.gz`` instead.
"""

from __future__ import annotations

import gc
import gzip
import io
import json
import shutil
import struct
import tempfile
import warnings
from pathlib import Path

import numpy as np

from memesearch.errors import require
from memesearch.ml.families.moondream.bundle import FORMAT_VERSION, MAGIC

# torch-only module: without torch its import fails here, naming the extra to install.
require("torch", extra="export", purpose="Exporting Moondream to ONNX")

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


def export_graph(module, name: str, cfg: dict, scratch: Path) -> Path:
    """torch.onnx.export (TorchScript exporter) of one component into ``scratch/<name>.onnx``.

    Above protobuf's 2 GiB limit the exporter writes the weights as extra files in ``scratch``.
    """
    torch = require("torch", extra="export", purpose="Exporting Moondream to ONNX")
    inputs, outputs, dynamic = _ONNX_SPECS[name]
    target = Path(scratch) / f"{name}.onnx"
    # The TorchScript exporter is deprecated but is what reliably keeps the past length
    # of the KV cache symbolic here; its deprecation notice is noise for callers.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        torch.onnx.export(module, _example_inputs(name, cfg), str(target), dynamo=False,
                          input_names=inputs, output_names=outputs, dynamic_axes=dynamic, opset_version=17)
    return target


def gather_external_data(graph_path: Path, data_path: Path) -> bytes:
    """A graph whose weights sit in files beside it -> its bytes, the weights in ``data_path``.

    The graph refers to the data by file name: ONNX Runtime, given the graph as bytes, looks
    for it in the working directory (a ``.mf`` entry cannot hold more than 2 GiB of graph).
    Tensors start on 64 KiB boundaries so ONNX Runtime can map them instead of reading them.
    """
    import onnx

    model = onnx.load(str(graph_path), load_external_data=False)
    with data_path.open("wb") as sink:
        for tensor in model.graph.initializer:
            if tensor.data_location != onnx.TensorProto.EXTERNAL:
                continue
            info = {entry.key: entry.value for entry in tensor.external_data}
            with (graph_path.parent / info["location"]).open("rb") as source:
                source.seek(int(info.get("offset", 0)))
                data = source.read(int(info["length"])) if "length" in info else source.read()
            sink.write(b"\0" * (-sink.tell() % 65536))
            offset = sink.tell()
            sink.write(data)
            del tensor.external_data[:]
            for key, value in (("location", data_path.name), ("offset", str(offset)), ("length", str(len(data)))):
                tensor.external_data.add(key=key, value=value)
    return model.SerializeToString()


def quantize_graph(model: bytes | Path) -> bytes:
    """Dynamic int8 quantisation of the MatMul weights (what the real int8 bundles use).

    ``model`` is serialized bytes, or the path of a graph whose weights may lie beside it.
    """
    from memesearch.ml.onnx_runtime.quantize import quantize_matmuls

    with tempfile.TemporaryDirectory() as scratch:
        target = Path(scratch) / "out.onnx"
        if isinstance(model, Path):
            source = model
        else:
            source = Path(scratch) / "in.onnx"
            source.write_bytes(model)
        quantize_matmuls(source, target)
        return target.read_bytes()


def export(checkpoint_dir: Path, out_dir: Path, *, int8: bool = False, name: str = "moondream-tiny") -> Path:
    """Checkpoint -> ``<name>-fp32.mf`` (+ ``<name>-int8.mf``) in out_dir.

    Components are exported one at a time so a full-size model's torch weights and ONNX
    copies of them are not all in memory at once. A graph above 2 GiB (the full-size fp32
    text decoder) keeps its weights in ``<name>-fp32.<component>.onnx.data`` beside the
    bundle; its int8 version fits in the bundle.
    """
    from memesearch.ml.families.moondream.tiny import COMPONENTS, initial_kv_cache, load_modules, read_architecture

    checkpoint_dir, out_dir = Path(checkpoint_dir), Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cfg, _ = read_architecture(checkpoint_dir)
    config = json.loads((checkpoint_dir / "config.json").read_text())
    fp32, quantized, shared = {}, {}, {"tokenizer.json": (checkpoint_dir / "tokenizer.json").read_bytes()}
    with tempfile.TemporaryDirectory() as scratch_root:
        for component in COMPONENTS:
            scratch = Path(scratch_root) / component
            scratch.mkdir()
            modules = load_modules(checkpoint_dir, ("text_encoder", component) if component == "text_decoder" else (component,))
            if component == "text_decoder":
                shared["initial_kv_cache.npy"] = initial_kv_cache(modules, config["special_tokens"]["bos"]).numpy()
            graph = export_graph(modules[component], component, cfg, scratch)
            del modules
            gc.collect()  # drop the torch weights before quantisation loads the graph's
            if int8:
                quantized[f"{component}.onnx"] = quantize_graph(graph)
            if len(list(scratch.iterdir())) > 1:  # the exporter moved the weights out of the graph
                fp32[f"{component}.onnx"] = gather_external_data(graph, out_dir / f"{name}-fp32.{component}.onnx.data")
            else:
                fp32[f"{component}.onnx"] = graph.read_bytes()
            shutil.rmtree(scratch)
    shared["config.json"] = config
    write_bundle(fp32 | shared, out_dir / f"{name}-fp32.mf")
    if int8:
        write_bundle(quantized | shared, out_dir / f"{name}-int8.mf")
    return out_dir
