"""Export a SmolVLM / Idefics3 checkpoint to the community ONNX layout.

Writes ``onnx/vision_encoder.onnx``, ``onnx/embed_tokens.onnx`` and
``onnx/decoder_model_merged.onnx`` in the file layout of ``HuggingFaceTB/SmolVLM-256M-Instruct``.
The decoder is by default our own GroupQueryAttention graph (smolvlm/decoder_graph.py: 13 nodes
per layer, right-padded batches); ``gqa=False``, or a text model that graph does not support,
traces the community decoder's inputs and outputs instead (:class:`OnnxSmolVLMCaptioner` runs
both, and the community downloads, telling them apart by their inputs). Copies
the tokenizer / processor / config files, with ``int8=True`` adds ``*_int8.onnx`` copies (the
decoder per tensor or per row, see ``quantize_int8``), and with ``q4=True`` ``*_q4.onnx`` ones (the int8 vision encoder, a
decoder with 4-bit weight-only ``MatMulNBits``). Uses the legacy TorchScript exporter (``dynamo=False``), which needs
no extra packages.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

from memesearch.errors import require
from memesearch.ml.families.common.export import OPSET, copy_checkpoint_files
from memesearch.ml.families.smolvlm.assets import ONNX_PARTS, onnx_path

# torch-only module: without torch its import fails here, naming the extra to install.
require("torch", extra="export", purpose="Exporting SmolVLM to ONNX")



def export(checkpoint_dir: Path, out_dir: Path, *, int8: bool = False, q4: bool = False, gqa: bool = True,
           int8_decoder: str = "per_tensor") -> Path:
    """Export ``checkpoint_dir`` (a transformers Idefics3 checkpoint) into ``out_dir``; ``int8_decoder``
    chooses the int8 decoder (``derive_decoder.INT8_DECODERS``, models.yml ``sources.onnx.int8_decoder``)."""
    torch = require("torch", extra="export", purpose="Exporting SmolVLM to ONNX")
    transformers = require("transformers", extra="export", purpose="Exporting SmolVLM to ONNX")
    from memesearch.ml.families.smolvlm.export_modules import DecoderExport, EmbedTokensExport, VisionEncoderExport

    checkpoint_dir, out_dir = Path(checkpoint_dir), Path(out_dir)
    (out_dir / "onnx").mkdir(parents=True, exist_ok=True)
    model = transformers.Idefics3ForConditionalGeneration.from_pretrained(
        checkpoint_dir, attn_implementation="eager", dtype=torch.float32
    ).eval()
    config = model.config

    with torch.no_grad(), warnings.catch_warnings():
        # The tracer's notes (shapes baked as constants: the tile size, the pixel-shuffle
        # grid) are expected for this model and only confuse users.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        _export_vision(torch, VisionEncoderExport(model), config, out_dir / onnx_path("vision_encoder", "fp32"))
        _export_embed(torch, EmbedTokensExport(model), out_dir / onnx_path("embed_tokens", "fp32"))
        decoder_path = out_dir / onnx_path("decoder_model_merged", "fp32")
        if not (gqa and _write_gqa_decoder(model, decoder_path)):
            _export_decoder(torch, DecoderExport(model), config, decoder_path)
    _copy_support_files(checkpoint_dir, out_dir)
    if int8:
        quantize_int8(out_dir, int8_decoder)
    if q4:
        quantize_q4(out_dir)
    return out_dir


def _export_vision(torch, module, config, path: Path) -> None:
    size = config.vision_config.image_size
    pixel_values = torch.randn(1, 2, 3, size, size)
    pixel_mask = torch.ones(1, 2, size, size, dtype=torch.bool)
    torch.onnx.export(
        module,
        (pixel_values, pixel_mask),
        str(path),
        input_names=["pixel_values", "pixel_attention_mask"],
        output_names=["image_features"],
        dynamic_axes={
            "pixel_values": {0: "batch_size", 1: "num_images", 3: "height", 4: "width"},
            "pixel_attention_mask": {0: "batch_size", 1: "num_images", 2: "height", 3: "width"},
            "image_features": {0: "num_real_images"},
        },
        opset_version=OPSET,
        dynamo=False,
    )


def _export_embed(torch, module, path: Path) -> None:
    input_ids = torch.tensor([[1, 2, 3], [3, 2, 1]], dtype=torch.long)
    torch.onnx.export(
        module,
        (input_ids,),
        str(path),
        input_names=["input_ids"],
        output_names=["inputs_embeds"],
        dynamic_axes={
            "input_ids": {0: "batch_size", 1: "sequence_length"},
            "inputs_embeds": {0: "batch_size", 1: "sequence_length"},
        },
        opset_version=OPSET,
        dynamo=False,
    )


def _write_gqa_decoder(model, path: Path) -> bool:
    """Write the GroupQueryAttention decoder; False (nothing written) for a text model it does not support."""
    import onnx

    from memesearch.ml.families.smolvlm.decoder_graph import TextConfig, UnsupportedDecoder, build_decoder

    try:
        text = TextConfig.from_config(model.config.text_config.to_dict())
    except UnsupportedDecoder as exc:
        warnings.warn(f"{exc}; exporting the traced decoder instead")
        return False
    weights = {name: tensor.detach().numpy() for name, tensor in model.model.text_model.state_dict().items()}
    weights["lm_head.weight"] = model.lm_head.weight.detach().numpy()
    onnx.save(build_decoder(weights, text), str(path))
    return True


def _export_decoder(torch, module, config, path: Path) -> None:
    text = config.text_config
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // text.num_attention_heads
    batch, new_tokens, past_length = 2, 3, 4  # trace with seq > 1 and past > 0: both stay dynamic
    inputs_embeds = torch.randn(batch, new_tokens, text.hidden_size)
    attention_mask = torch.ones(batch, past_length + new_tokens, dtype=torch.long)
    position_ids = torch.arange(past_length, past_length + new_tokens).repeat(batch, 1)
    past, past_names, present_names, dynamic_axes = [], [], [], {}
    for layer in range(text.num_hidden_layers):
        for kind in ("key", "value"):
            past.append(torch.randn(batch, text.num_key_value_heads, past_length, head_dim))
            past_names.append(f"past_key_values.{layer}.{kind}")
            present_names.append(f"present.{layer}.{kind}")
            dynamic_axes[past_names[-1]] = {0: "batch_size", 2: "past_sequence_length"}
            dynamic_axes[present_names[-1]] = {0: "batch_size", 2: "total_sequence_length"}
    dynamic_axes.update(
        {
            "inputs_embeds": {0: "batch_size", 1: "sequence_length"},
            "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
            "position_ids": {0: "batch_size", 1: "sequence_length"},
            "logits": {0: "batch_size"},  # (batch, 1, vocab): the last position only
        }
    )
    torch.onnx.export(
        module,
        (inputs_embeds, attention_mask, position_ids, *past),
        str(path),
        input_names=["inputs_embeds", "attention_mask", "position_ids", *past_names],
        output_names=["logits", *present_names],
        dynamic_axes=dynamic_axes,
        opset_version=OPSET,
        dynamo=False,
    )


def _copy_support_files(checkpoint_dir: Path, out_dir: Path) -> None:
    copy_checkpoint_files(checkpoint_dir, out_dir)
    # transformers >= 5 nests the image processor in processor_config.json; the community
    # layout (and our runtime's file list) has it as preprocessor_config.json.
    if not (out_dir / "preprocessor_config.json").is_file():
        processor = json.loads((checkpoint_dir / "processor_config.json").read_text(encoding="utf-8"))
        image_processor = dict(processor.get("image_processor", {}))
        image_processor.setdefault("processor_class", processor.get("processor_class", "Idefics3Processor"))
        (out_dir / "preprocessor_config.json").write_text(json.dumps(image_processor, indent=2), encoding="utf-8")


def quantize_int8(out_dir: Path, int8_decoder: str = "per_tensor") -> None:
    """Write ``*_int8.onnx`` next to each fp32 graph: dynamic int8 MatMuls (per-tensor activation
    scales), except with ``int8_decoder="per_row"`` the decoder's: 8-bit block weights and per-row
    activation blocks, so that memes decoded in one batch get the tokens they get alone
    (``quantize.quantize_matmuls_8bit_rows``; bulk describe, issue 16). The vision encoder runs one
    tile at a time, so its per-tensor scales never mix memes."""
    from memesearch.ml.families.smolvlm.derive_decoder import INT8_DECODERS
    from memesearch.ml.onnx_runtime.quantize import quantize_matmuls, quantize_matmuls_8bit_rows

    if int8_decoder not in INT8_DECODERS:
        raise ValueError(f"int8_decoder {int8_decoder!r} is not one of {', '.join(INT8_DECODERS)}")
    for part in ONNX_PARTS:
        target = out_dir / onnx_path(part, "int8")
        if part == "vision_encoder":
            quantize_vision(out_dir, target)
        elif part == "decoder_model_merged" and int8_decoder == "per_row":
            quantize_matmuls_8bit_rows(out_dir / onnx_path(part, "fp32"), target)
        else:
            quantize_matmuls(out_dir / onnx_path(part, "fp32"), target)


def quantize_vision(out_dir: Path, target: Path) -> None:
    """The int8 vision encoder: int8 MatMuls, then each layer's attention products fused into one
    MultiHeadAttention without the patch mask (ml/onnx_runtime/attention_fusion.py: the captioner
    feeds whole tiles). Graphs derived before this fusion keep the same int8 MatMuls: they stay valid,
    only slower."""
    import onnx

    from memesearch.ml.onnx_runtime.attention_fusion import fuse_attention
    from memesearch.ml.onnx_runtime.quantize import quantize_matmuls

    quantize_matmuls(out_dir / onnx_path("vision_encoder", "fp32"), target)
    config = json.loads((out_dir / "config.json").read_text(encoding="utf-8"))
    model = onnx.load(str(target))
    if fuse_attention(model, config["vision_config"]["num_attention_heads"], without_mask=True):
        onnx.save(model, str(target))


def quantize_q4(out_dir: Path) -> None:
    """Write ``*_q4.onnx``: the vision encoder as int8 (as ``quantize_int8``; 4-bit weights would
    save little there, its time is in attention over ~1,000 patches), the embeddings unchanged
    (a Gather) and the decoder's MatMuls as 4-bit blocks, which halves the weights each token reads."""
    import shutil

    from memesearch.ml.onnx_runtime.quantize import quantize_matmuls_4bit

    vision_int8 = out_dir / onnx_path("vision_encoder", "int8")
    if vision_int8.is_file():
        shutil.copyfile(vision_int8, out_dir / onnx_path("vision_encoder", "q4"))
    else:
        quantize_vision(out_dir, out_dir / onnx_path("vision_encoder", "q4"))
    shutil.copyfile(out_dir / onnx_path("embed_tokens", "fp32"), out_dir / onnx_path("embed_tokens", "q4"))
    quantize_matmuls_4bit(
        out_dir / onnx_path("decoder_model_merged", "fp32"), out_dir / onnx_path("decoder_model_merged", "q4")
    )
