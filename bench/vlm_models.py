"""Full-size RANDOM-weight checkpoints of the real VLM configurations, for speed benchmarks.

Compute and memory do not depend on the weight values, only on the shapes, so a random model
with the published dimensions costs what the real one costs. Tokenizers are the tiny builders'
(real special tokens, small explicit vocabularies) while the model keeps the real vocabulary
size, so the LM head and the embedding table have their real cost; prompts therefore tokenize
into a few more (byte-level) tokens than with the real vocabulary — the benchmark prints the
prompt length it actually ran.

Configurations (checked against the published config.json files, see the search notes in
docs/BENCHMARKS.md):
- SmolVLM-256M-Instruct: SigLIP base-patch16-512 vision (768/3072/12 layers/12 heads, 512 px,
  patch 16), pixel shuffle 4 (64 tokens per tile), SmolLM2-135M text (576/1536/30 layers/
  9 heads/3 kv heads, head_dim 64, vocab 49280, rope 1e5, untied). Processor: longest edge
  2048, tiles of 512.
- SmolVLM-500M-Instruct: same vision/processor; SmolLM2-360M text (960/2560/32/15/5 kv).
- Florence-2-base: DaViT (128,256,512,1024) dims, depths (1,1,9,1), heads/groups (4,8,16,32),
  window 12, projection 768; BART text 768, 6+6 layers, 12 heads, ffn 3072, vocab 51289, 768 px.
- Florence-2-large: DaViT (256,512,1024,2048), heads/groups (8,16,32,64); BART 1024, 12+12
  layers, 16 heads, ffn 4096, projection 1024.
- moondream2 (2B, 2024/2025 revisions; vikhyat/moondream ``config_md2.json``, HF PhiConfig):
  SigLIP-so400m-style vision (1152/4304/27 layers/16 heads, 378-px crops, patch 14), projection
  MLP 2x1152 -> 8192 -> 2048, Phi-1.5 text (2048/8192/24 layers/32 heads, partial rotary 32 of
  64, vocab 51200). There is no transformers class for it (the hub model is remote code), so
  this is our own torch re-implementation with those shapes (memesearch.ml.families.moondream.tiny
  ``MOONDREAM2``), exported into a ``.mf`` bundle by memesearch.ml.families.moondream.export.
"""

from __future__ import annotations

import json
from pathlib import Path

SMOLVLM_TEXT = {
    "smolvlm-256m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30,
                         num_attention_heads=9, num_key_value_heads=3),
    "smolvlm-500m": dict(hidden_size=960, intermediate_size=2560, num_hidden_layers=32,
                         num_attention_heads=15, num_key_value_heads=5),
}
SMOLVLM_VOCAB = 49280
SMOLVLM_VISION = dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                      image_size=512, patch_size=16)

FLORENCE = {
    "florence-2-base": dict(
        vision=dict(embed_dim=[128, 256, 512, 1024], num_heads=[4, 8, 16, 32], num_groups=[4, 8, 16, 32],
                    projection_dim=768),
        text=dict(d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
                  decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072),
    ),
    "florence-2-large": dict(
        vision=dict(embed_dim=[256, 512, 1024, 2048], num_heads=[8, 16, 32, 64], num_groups=[8, 16, 32, 64],
                    projection_dim=1024),
        text=dict(d_model=1024, encoder_layers=12, decoder_layers=12, encoder_attention_heads=16,
                  decoder_attention_heads=16, encoder_ffn_dim=4096, decoder_ffn_dim=4096),
    ),
}
FLORENCE_VOCAB = 51289
FLORENCE_IMAGE_SIZE = 768


def build_smolvlm(name: str, out_dir: Path) -> Path:
    import torch
    import transformers
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    from memesearch.ml.families.smolvlm import tiny

    raw = tiny.build_tokenizer()
    tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=raw, bos_token="<|im_start|>", eos_token=tiny.END_OF_UTTERANCE,
        pad_token="<|im_end|>", unk_token="<|endoftext|>",
        additional_special_tokens=["<fake_token_around_image>", "<image>", tiny.END_OF_UTTERANCE],
    )
    ids = {token: raw.token_to_id(token) for token in ("<image>", tiny.END_OF_UTTERANCE, "<|im_end|>", "<|im_start|>")}
    config = transformers.Idefics3Config(
        image_token_id=ids["<image>"],
        scale_factor=4,
        tie_word_embeddings=False,
        text_config={
            "model_type": "llama", "vocab_size": SMOLVLM_VOCAB, "head_dim": 64, "max_position_embeddings": 8192,
            "rms_norm_eps": 1e-5, "rope_theta": 100000.0, "tie_word_embeddings": False,
            "pad_token_id": ids["<|im_end|>"], "bos_token_id": ids["<|im_start|>"],
            "eos_token_id": ids[tiny.END_OF_UTTERANCE], **SMOLVLM_TEXT[name],
        },
        vision_config=SMOLVLM_VISION,
    )
    torch.manual_seed(0)
    model = transformers.Idefics3ForConditionalGeneration(config).eval()
    model.generation_config.bos_token_id = ids["<|im_start|>"]
    model.generation_config.eos_token_id = ids[tiny.END_OF_UTTERANCE]
    model.generation_config.pad_token_id = ids["<|im_end|>"]
    model.save_pretrained(out_dir)
    processor = transformers.Idefics3Processor(
        image_processor=Idefics3ImageProcessorPil(size={"longest_edge": 2048}, max_image_size={"longest_edge": 512}),
        tokenizer=tokenizer,
        image_seq_len=64,
        chat_template=tiny.SMOLVLM_CHAT_TEMPLATE,
    )
    processor.save_pretrained(out_dir)
    return out_dir


def build_florence(name: str, out_dir: Path) -> Path:
    import torch
    import transformers

    from memesearch.ml.families.florence2 import tiny

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = tiny.build_tokenizer()
    tokenizer.save(str(out_dir / "tokenizer.json"))
    (out_dir / "tokenizer_config.json").write_text(json.dumps(tiny._tokenizer_config(), indent=2))
    image_seq_length = (FLORENCE_IMAGE_SIZE // 32) ** 2 + 1  # 24x24 grid + the pooled token
    size = {"height": FLORENCE_IMAGE_SIZE, "width": FLORENCE_IMAGE_SIZE}
    preprocessor = {
        "image_processor_type": "CLIPImageProcessor", "processor_class": "Florence2Processor",
        "do_resize": True, "size": size, "resample": 3, "do_center_crop": False, "crop_size": size,
        "do_rescale": True, "rescale_factor": 1 / 255, "do_normalize": True,
        "image_mean": [0.485, 0.456, 0.406], "image_std": [0.229, 0.224, 0.225], "do_convert_rgb": True,
        "image_seq_length": image_seq_length,
    }
    (out_dir / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    processor = {"processor_class": "Florence2Processor", "num_additional_image_tokens": 1,
                 "post_processor_config": {"pure_text": {}}}
    (out_dir / "processor_config.json").write_text(json.dumps(processor, indent=2))

    dims = FLORENCE[name]
    vision = transformers.Florence2VisionConfig(
        depths=[1, 1, 9, 1], patch_size=[7, 3, 3, 3], patch_stride=[4, 2, 2, 2], patch_padding=[3, 1, 1, 1],
        patch_prenorm=[False, True, True, True], window_size=12, drop_path_rate=0.0, **dims["vision"],
    )
    text = transformers.BartConfig(
        vocab_size=FLORENCE_VOCAB, max_position_embeddings=1024, dropout=0.0, attention_dropout=0.0,
        activation_dropout=0.0, scale_embedding=False, bos_token_id=0, pad_token_id=1, eos_token_id=2,
        decoder_start_token_id=2, forced_eos_token_id=2, **dims["text"],
    )
    config = transformers.Florence2Config(
        text_config=text.to_dict(), vision_config=vision.to_dict(), image_token_id=tokenizer.token_to_id(tiny.IMAGE_TOKEN)
    )
    torch.manual_seed(0)
    model = transformers.Florence2ForConditionalGeneration(config).eval()
    model.save_pretrained(out_dir)
    transformers.GenerationConfig(**tiny.GENERATION_CONFIG).save_pretrained(out_dir)
    return out_dir


def build_moondream(out_dir: Path) -> Path:
    from memesearch.ml.families.moondream.tiny import MOONDREAM2, build_checkpoint

    return build_checkpoint(out_dir, MOONDREAM2, seed=0)


FAMILIES = {"smolvlm-256m": "smolvlm", "smolvlm-500m": "smolvlm", "florence-2-base": "florence2",
            "florence-2-large": "florence2", "moondream2": "moondream"}
#: Bundle name prefix of the exported moondream2 (``moondream-2b-fp32.mf``, ``moondream-2b-int8.mf``).
MOONDREAM_BUNDLE = "moondream-2b"


def build_checkpoint(name: str, out_dir: Path) -> Path:
    out_dir = Path(out_dir)
    if (out_dir / "config.json").is_file() and any(out_dir.glob("*.safetensors")):
        return out_dir
    out_dir.mkdir(parents=True, exist_ok=True)
    if FAMILIES[name] == "smolvlm":
        return build_smolvlm(name, out_dir)
    if FAMILIES[name] == "moondream":
        return build_moondream(out_dir)
    return build_florence(name, out_dir)


def export_onnx(name: str, checkpoint_dir: Path, onnx_dir: Path) -> Path:
    """Our own exporter (with int8 copies, and q4 ones for SmolVLM); skipped when they exist."""
    onnx_dir = Path(onnx_dir)
    if FAMILIES[name] == "moondream":
        if (onnx_dir / f"{MOONDREAM_BUNDLE}-int8.mf").is_file():
            return onnx_dir
        from memesearch.ml.families.moondream.export import export as export_moondream

        return export_moondream(checkpoint_dir, onnx_dir, int8=True, name=MOONDREAM_BUNDLE)
    if FAMILIES[name] == "smolvlm":
        from memesearch.ml.families.smolvlm.export import export, quantize_q4

        if (onnx_dir / "onnx" / "decoder_model_merged_int8.onnx").is_file():
            if not (onnx_dir / "onnx" / "decoder_model_merged_q4.onnx").is_file():
                quantize_q4(onnx_dir)  # a cache exported before q4 existed
            return onnx_dir
        # The int8 decoder models.yml asks for (smolvlm-256m: per_row, batched exactly).
        from memesearch.ml.registry import get_spec

        return export(checkpoint_dir, onnx_dir, int8=True, q4=True, int8_decoder=get_spec(name).sources.onnx.int8_decoder)
    if (onnx_dir / "onnx" / "decoder_model_merged_int8.onnx").is_file():
        return onnx_dir
    from memesearch.ml.families.florence2.export import export

    return export(checkpoint_dir, onnx_dir, int8=True)


if __name__ == "__main__":
    import argparse
    import time

    parser = argparse.ArgumentParser(description="Build + export full-size random VLM checkpoints")
    parser.add_argument("models", nargs="+", choices=sorted(FAMILIES))
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "out" / "models")
    args = parser.parse_args()
    for model_name in args.models:
        started = time.perf_counter()
        checkpoint = build_checkpoint(model_name, args.out / model_name / "checkpoint")
        print(f"{model_name}: checkpoint in {time.perf_counter() - started:.0f}s", flush=True)
        export_onnx(model_name, checkpoint, args.out / model_name / "onnx")
        print(f"{model_name}: exported in {time.perf_counter() - started:.0f}s", flush=True)
