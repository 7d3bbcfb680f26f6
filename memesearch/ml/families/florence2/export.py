"""Export a transformers Florence-2 checkpoint to the onnx-community four-file layout.

Writes ``onnx/vision_encoder.onnx``, ``onnx/embed_tokens.onnx``, ``onnx/encoder_model.onnx``
and ``onnx/decoder_model_merged.onnx`` with the input/output names Transformers.js
and our runtime use, copies the tokenizer/processor/config JSON files, and with
``int8=True`` also writes dynamically quantised ``*_int8.onnx`` copies.
"""

from __future__ import annotations

import tempfile
import warnings
from pathlib import Path

from memesearch.errors import require
from memesearch.ml.families.common.export import OPSET, copy_checkpoint_files
from memesearch.ml.families.florence2.export_merge import merge_decoders
from memesearch.ml.families.florence2.inputs import ImageSettings

# torch-only module: without torch its import fails here, naming the extra to install.
require("torch", extra="export", purpose="Exporting Florence-2 to ONNX")

_PURPOSE = "Exporting Florence-2 to ONNX"


def _torch_export(module, args: tuple, path: Path, inputs: list[str], outputs: list[str], axes: dict) -> None:
    torch = require("torch", extra="export", purpose=_PURPOSE)
    with torch.no_grad(), warnings.catch_warnings():
        # Shape-dependent Python branches are traced as constants; the parity tests cover them.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=axes,
            opset_version=OPSET,
            do_constant_folding=True,
            dynamo=False,  # the TorchScript exporter needs no onnxscript and keeps our names
        )


def _save(model, path: Path) -> None:
    onnx = require("onnx", extra="export", purpose=_PURPOSE)
    size = sum(len(tensor.raw_data) for tensor in model.graph.initializer)
    if size > 1_800_000_000:  # protobuf's 2 GB limit
        onnx.save(model, str(path), save_as_external_data=True, location=path.name + "_data")
    else:
        onnx.save(model, str(path))


def _export_decoder(model, config, onnx_dir: Path, work_dir: Path, *, int8: bool) -> None:
    torch = require("torch", extra="export", purpose=_PURPOSE)
    onnx = require("onnx", extra="export", purpose=_PURPOSE)
    from memesearch.ml.families.florence2.export_modules import DecoderWithCache, DecoderWithoutCache, cache_names

    text = config.text_config
    heads, head_dim = text.decoder_attention_heads, text.d_model // text.decoder_attention_heads
    layers = text.decoder_layers
    batch, encoder_len, past_len = 2, 7, 3
    encoder_hidden = torch.randn(batch, encoder_len, text.d_model)
    # Zeros in the sample mask keep transformers from skipping the mask while tracing.
    encoder_mask = torch.ones(batch, encoder_len, dtype=torch.int64)
    encoder_mask[1, -2:] = 0
    past_names, present_names = cache_names(layers)
    kv_axes = {}
    for name in past_names + present_names:
        length = "past_decoder_sequence_length" if ".decoder." in name else "encoder_sequence_length"
        if name.startswith("present") and ".decoder." in name:
            length = "past_decoder_sequence_length + 1"
        kv_axes[name] = {0: "batch_size", 2: length}
    common_axes = {
        "encoder_hidden_states": {0: "batch_size", 1: "encoder_sequence_length"},
        "encoder_attention_mask": {0: "batch_size", 1: "encoder_sequence_length"},
        "inputs_embeds": {0: "batch_size", 1: "decoder_sequence_length"},
        "logits": {0: "batch_size", 1: "decoder_sequence_length"},
    }
    inputs = ["inputs_embeds", "encoder_hidden_states", "encoder_attention_mask"]
    outputs = ["logits", *present_names]

    no_cache_path = work_dir / "decoder_no_cache.onnx"
    _torch_export(
        DecoderWithoutCache(model),
        (torch.randn(batch, 2, text.d_model), encoder_hidden, encoder_mask),
        no_cache_path,
        inputs,
        outputs,
        {**common_axes, **{name: axes for name, axes in kv_axes.items() if name.startswith("present")}},
    )
    past = []
    for name in past_names:
        length = past_len if ".decoder." in name else encoder_len
        past.append(torch.randn(batch, heads, length, head_dim))
    with_cache_path = work_dir / "decoder_with_cache.onnx"
    _torch_export(
        DecoderWithCache(model, layers),
        (torch.randn(batch, 1, text.d_model), encoder_hidden, encoder_mask, *past),
        with_cache_path,
        inputs + past_names,
        outputs,
        {**common_axes, **kv_axes},
    )
    merged = merge_decoders(onnx.load(str(no_cache_path)), onnx.load(str(with_cache_path)))
    _save(merged, onnx_dir / "decoder_model_merged.onnx")
    if int8:
        # Quantise the halves before merging: the quantiser cannot see weights that a
        # merged model keeps in the outer graph, so it would skip every branch MatMul.
        halves = [
            _quantize_file(path, path.with_name(f"{path.stem}_int8.onnx"))
            for path in (no_cache_path, with_cache_path)
        ]
        merged = merge_decoders(onnx.load(str(halves[0])), onnx.load(str(halves[1])))
        _save(merged, onnx_dir / "decoder_model_merged_int8.onnx")


def _quantize_file(source: Path, target: Path) -> Path:
    """Dynamic int8 quantisation of the MatMul weights (activations quantised at run time)."""
    from memesearch.ml.onnx_runtime.quantize import quantize_matmuls

    quantize_matmuls(source, target)
    return target


def export(checkpoint_dir: Path, out_dir: Path, *, int8: bool = False) -> Path:
    """Export ``checkpoint_dir`` (a transformers Florence-2 checkpoint) into ``out_dir``."""
    torch = require("torch", extra="export", purpose=_PURPOSE)
    transformers = require("transformers", extra="export", purpose=_PURPOSE)
    # Imported here: the module needs torch, which this package only wants when exporting.
    from memesearch.ml.families.florence2.export_modules import EmbedTokens, TextEncoder, VisionEncoder

    checkpoint_dir, out_dir = Path(checkpoint_dir), Path(out_dir)
    onnx_dir = out_dir / "onnx"
    onnx_dir.mkdir(parents=True, exist_ok=True)
    model = transformers.Florence2ForConditionalGeneration.from_pretrained(
        checkpoint_dir, attn_implementation="eager", dtype=torch.float32
    ).eval()
    config = model.config
    vision = config.vision_config
    image_settings = ImageSettings.from_model_dir(checkpoint_dir)
    height, width = image_settings.height, image_settings.width
    d_model = config.text_config.d_model

    _torch_export(
        VisionEncoder(model),
        (torch.randn(2, vision.in_channels, height, width),),
        onnx_dir / "vision_encoder.onnx",
        ["pixel_values"],
        ["image_features"],
        {"pixel_values": {0: "batch_size"}, "image_features": {0: "batch_size"}},
    )
    _torch_export(
        EmbedTokens(model),
        (torch.tensor([[0, 5, 6, 2], [0, 7, 2, 1]], dtype=torch.int64),),
        onnx_dir / "embed_tokens.onnx",
        ["input_ids"],
        ["inputs_embeds"],
        {
            "input_ids": {0: "batch_size", 1: "sequence_length"},
            "inputs_embeds": {0: "batch_size", 1: "sequence_length"},
        },
    )
    mask = torch.ones(2, 9, dtype=torch.int64)
    mask[1, -3:] = 0  # see _export_decoder: a padded sample keeps the mask in the graph
    _torch_export(
        TextEncoder(model),
        (torch.randn(2, 9, d_model), mask),
        onnx_dir / "encoder_model.onnx",
        ["inputs_embeds", "attention_mask"],
        ["last_hidden_state"],
        {
            "inputs_embeds": {0: "batch_size", 1: "encoder_sequence_length"},
            "attention_mask": {0: "batch_size", 1: "encoder_sequence_length"},
            "last_hidden_state": {0: "batch_size", 1: "encoder_sequence_length"},
        },
    )
    with tempfile.TemporaryDirectory() as work_dir:
        _export_decoder(model, config, onnx_dir, Path(work_dir), int8=int8)
    if int8:
        for component in ("vision_encoder", "embed_tokens", "encoder_model"):
            _quantize_file(onnx_dir / f"{component}.onnx", onnx_dir / f"{component}_int8.onnx")
    copy_checkpoint_files(checkpoint_dir, out_dir)
    return out_dir
