"""A tiny random Florence-2 (DaViT vision tower + BART text model), built offline.

Same architecture and file layout as ``florence-community/Florence-2-base``, just
a few thousand parameters, so exporters and our ONNX generation loop can be
checked token for token against transformers in seconds.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from PIL import Image

from memesearch.errors import require

# torch-only module: without torch its import fails here, naming the extra to install.
require("torch", extra="torch", purpose="The tiny Florence-2 model")

#: The task token the check uses; the processor rewrites it to a sentence.
TINY_PROMPT = "<MORE_DETAILED_CAPTION>"
TINY_IMAGE_SIZE = 64

SPECIAL_TOKENS = ["<s>", "<pad>", "</s>", "<unk>"]  # ids 0..3, as in BART
IMAGE_TOKEN = "<image>"
#: Whole words merged into single tokens so prompts are short; every other
#: string still tokenizes through the 256 byte-level symbols.
_WORDS = [
    "What", "Describe", "Locate", "Ġis", "Ġthe", "Ġtext", "Ġin", "Ġimage", "Ġdoes", "Ġdescribe",
    "Ġdetail", "Ġwhat", "Ġshown", "Ġwith", "Ġa", "Ġparagraph", "Ġobjects", "Ġcat", "Ġdog", "Ġmeme",
    "Ġfunny", "Ġman", "Ġsign", "Ġred", "Ġblue",
]  # fmt: skip

#: Florence-2's generation defaults (generation_config.json of the real checkpoints).
GENERATION_CONFIG = {
    "bos_token_id": 0,
    "decoder_start_token_id": 2,
    "eos_token_id": 2,
    "forced_bos_token_id": 0,
    "forced_eos_token_id": 2,
    "no_repeat_ngram_size": 3,
    "num_beams": 3,
    "pad_token_id": 1,
}


def _vocab_and_merges() -> tuple[dict[str, int], list[tuple[str, str]]]:
    from tokenizers.pre_tokenizers import ByteLevel

    vocab = {token: index for index, token in enumerate(SPECIAL_TOKENS)}
    for symbol in sorted(ByteLevel.alphabet()):
        vocab[symbol] = len(vocab)
    merges: list[tuple[str, str]] = []
    for word in _WORDS:
        left = word[0]
        for char in word[1:]:
            merged = left + char
            if merged not in vocab:
                merges.append((left, char))
                vocab[merged] = len(vocab)
            left = merged
    return vocab, merges


def build_tokenizer():
    """A byte-level BPE tokenizer shaped like BART's, with Florence's special tokens."""
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors

    vocab, merges = _vocab_and_merges()
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.RobertaProcessing(("</s>", 2), ("<s>", 0), add_prefix_space=False)
    tokenizer.add_special_tokens([AddedToken(t, special=True, normalized=False) for t in SPECIAL_TOKENS])
    tokenizer.add_special_tokens(
        [
            AddedToken("<mask>", special=True, lstrip=True, normalized=False),
            AddedToken(IMAGE_TOKEN, special=True, normalized=False),
        ]
    )
    return tokenizer


def _tokenizer_config() -> dict:
    return {
        "tokenizer_class": "BartTokenizer",
        "bos_token": "<s>",
        "eos_token": "</s>",
        "sep_token": "</s>",
        "cls_token": "<s>",
        "unk_token": "<unk>",
        "pad_token": "<pad>",
        "mask_token": "<mask>",
        "add_prefix_space": False,
        "model_max_length": 1024,
        "extra_special_tokens": {"image_token": IMAGE_TOKEN},
    }


def _model_config(vocab_size: int, image_token_id: int, image_seq_length: int):
    transformers = require("transformers", extra="torch", purpose="Building the tiny Florence-2")
    vision = transformers.Florence2VisionConfig(
        depths=[1, 1],
        patch_size=[7, 3],
        patch_stride=[4, 2],
        patch_padding=[3, 1],
        patch_prenorm=[False, True],
        embed_dim=[16, 32],
        num_heads=[2, 4],
        num_groups=[2, 4],
        window_size=3,  # does not divide the 8x8 grid: exercises the window padding
        drop_path_rate=0.0,
        projection_dim=32,
        max_position_embeddings=16,
        initializer_range=0.3,
    )
    text = transformers.BartConfig(
        vocab_size=vocab_size,
        d_model=32,
        encoder_layers=1,
        decoder_layers=2,
        encoder_attention_heads=2,
        decoder_attention_heads=2,
        encoder_ffn_dim=64,
        decoder_ffn_dim=64,
        max_position_embeddings=256,
        init_std=0.3,
        dropout=0.0,
        attention_dropout=0.0,
        activation_dropout=0.0,
        scale_embedding=False,
        bos_token_id=0,
        pad_token_id=1,
        eos_token_id=2,
        decoder_start_token_id=2,
        forced_eos_token_id=2,
    )
    config = transformers.Florence2Config(
        text_config=text.to_dict(), vision_config=vision.to_dict(), image_token_id=image_token_id
    )
    config.initializer_range = 0.3
    return config


def build_tiny_checkpoint(out_dir: Path, *, seed: int = 0) -> Path:
    """Write a random tiny Florence-2 checkpoint plus processor files; return its directory."""
    torch = require("torch", extra="torch", purpose="Building the tiny Florence-2")
    transformers = require("transformers", extra="torch", purpose="Building the tiny Florence-2")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    tokenizer = build_tokenizer()
    tokenizer.save(str(out_dir / "tokenizer.json"))
    (out_dir / "tokenizer_config.json").write_text(json.dumps(_tokenizer_config(), indent=2))
    grid = TINY_IMAGE_SIZE // 8  # strides 4 then 2
    image_seq_length = grid * grid + 1  # + the pooled (temporal mean) token
    _write_processor_files(out_dir, image_seq_length)

    config = _model_config(tokenizer.get_vocab_size(), tokenizer.token_to_id(IMAGE_TOKEN), image_seq_length)
    torch.manual_seed(seed)
    model = transformers.Florence2ForConditionalGeneration(config).eval()
    _scramble_weights(model, seed)
    model.save_pretrained(out_dir)
    transformers.GenerationConfig(**GENERATION_CONFIG).save_pretrained(out_dir)
    return out_dir


def _scramble_weights(model, seed: int) -> None:
    """Random weights large enough that greedy decoding does not repeat one token."""
    torch = require("torch", extra="torch", purpose="Building the tiny Florence-2")
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name and name.endswith("weight"):
                param.copy_(1.0 + 0.1 * torch.randn(param.shape, generator=generator))
            else:
                param.copy_(0.3 * torch.randn(param.shape, generator=generator))


def _write_processor_files(out_dir: Path, image_seq_length: int) -> None:
    """preprocessor_config.json / processor_config.json in the layout of the real repos."""
    preprocessor = {
        "image_processor_type": "CLIPImageProcessor",
        "processor_class": "Florence2Processor",
        "do_resize": True,
        "size": {"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE},
        "resample": 3,
        "do_center_crop": False,
        "crop_size": {"height": TINY_IMAGE_SIZE, "width": TINY_IMAGE_SIZE},
        "do_rescale": True,
        "rescale_factor": 1 / 255,
        "do_normalize": True,
        "image_mean": [0.485, 0.456, 0.406],
        "image_std": [0.229, 0.224, 0.225],
        "do_convert_rgb": True,
        "image_seq_length": image_seq_length,
    }
    (out_dir / "preprocessor_config.json").write_text(json.dumps(preprocessor, indent=2))
    processor = {
        "processor_class": "Florence2Processor",
        "num_additional_image_tokens": 1,
        "post_processor_config": {"pure_text": {}},
    }
    (out_dir / "processor_config.json").write_text(json.dumps(processor, indent=2))


def load_reference(checkpoint_dir: Path):
    """(model, processor) of the transformers reference, eval mode, eager attention."""
    transformers = require("transformers", extra="torch", purpose="Running the Florence-2 reference")
    model = transformers.Florence2ForConditionalGeneration.from_pretrained(
        checkpoint_dir, attn_implementation="eager"
    ).eval()
    processor = transformers.AutoProcessor.from_pretrained(checkpoint_dir)
    return model, processor


def reference_generate(
    checkpoint_dir: Path, images: Sequence[Image.Image], prompt: str, max_new_tokens: int
) -> list[list[int]]:
    """transformers' greedy generation; ids per image without decoder start, forced BOS or EOS/padding."""
    return reference_generate_prompts(checkpoint_dir, images, [prompt] * len(images), max_new_tokens)


def reference_generate_prompts(
    checkpoint_dir: Path, images: Sequence[Image.Image], prompts: Sequence[str], max_new_tokens: int
) -> list[list[int]]:
    """Like :func:`reference_generate` with one prompt per image (the processor pads them)."""
    torch = require("torch", extra="torch", purpose="Running the Florence-2 reference")
    model, processor = load_reference(checkpoint_dir)
    inputs = processor(text=list(prompts), images=list(images), return_tensors="pt", padding=True)
    with torch.no_grad():
        output = model.generate(**inputs, do_sample=False, num_beams=1, max_new_tokens=max_new_tokens)
    return [strip_generated(row.tolist(), model.generation_config) for row in output]


def strip_generated(sequence: list[int], generation_config) -> list[int]:
    """Drop the decoder start token, the forced BOS, and everything from the first EOS on."""
    ids = sequence[1:]  # decoder_start_token_id
    if ids and ids[0] == generation_config.forced_bos_token_id:
        ids = ids[1:]
    eos = generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos])
    for position, token in enumerate(ids):
        if token in eos_ids:
            return ids[:position]
    return ids
