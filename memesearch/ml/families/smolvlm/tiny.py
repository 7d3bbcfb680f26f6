"""A tiny random SmolVLM (Idefics3) checkpoint, built offline.

Same classes and file layout as ``HuggingFaceTB/SmolVLM-256M-Instruct`` (Idefics3 vision
tower + pixel-shuffle connector + Llama text model, Idefics3 processor, SmolVLM chat
template and special tokens), only with toy sizes: 32 px tiles of 8 px patches and a pixel
shuffle of 2, so every tile costs 4 image tokens and a 64 px image is split into 2x2 tiles
plus the global image, exactly like a real 2048 px image is split into 4x4 tiles of 512 px.
"""

from __future__ import annotations

from pathlib import Path

from memesearch.errors import require

# torch-only module: without torch its import fails here, naming the extra to install.
require("torch", extra="torch", purpose="The tiny SmolVLM model")

TINY_PROMPT = "Describe this meme."

TINY_TILE_SIZE = 32
TINY_LONGEST_EDGE = 2 * TINY_TILE_SIZE

# The chat template HuggingFaceTB/SmolVLM-256M-Instruct ships in its processor config.
SMOLVLM_CHAT_TEMPLATE = (
    "<|im_start|>{% for message in messages %}{{message['role'] | capitalize}}"
    "{% if message['content'][0]['type'] == 'image' %}{{':'}}{% else %}{{': '}}{% endif %}"
    "{% for line in message['content'] %}{% if line['type'] == 'text' %}{{line['text']}}"
    "{% elif line['type'] == 'image' %}{{ '<image>' }}{% endif %}{% endfor %}<end_of_utterance>\n"
    "{% endfor %}{% if add_generation_prompt %}{{ 'Assistant:' }}{% endif %}"
)

# Special tokens of the real SmolVLM tokenizer (ids differ: ours are compact).
LEADING_SPECIALS = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
IMAGE_SPECIALS = ["<fake_token_around_image>", "<image>", "<global-img>"] + [
    f"<row_{row}_col_{col}>" for row in range(1, 7) for col in range(1, 7)
]
END_OF_UTTERANCE = "<end_of_utterance>"
# A few whole words so that prompts are not only single bytes.
EXTRA_WORDS = ["Describe", "this", "meme", "User", "Assistant", "image", "cat", "dog", "funny"]


def build_tokenizer():
    """A byte-level BPE tokenizer (like SmolLM2's) over an explicit small vocabulary."""
    tokenizers = require("tokenizers", extra="export", purpose="Building the tiny SmolVLM tokenizer")
    from tokenizers import decoders, models, pre_tokenizers

    byte_alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab: dict[str, int] = {}
    for token in LEADING_SPECIALS + byte_alphabet:
        vocab[token] = len(vocab)
    merges: list[tuple[str, str]] = []
    for word in EXTRA_WORDS:
        for variant in (word, "\u0120" + word):  # with and without the byte-level space
            current = variant[0]
            for char in variant[1:]:
                merged = current + char
                if merged not in vocab:
                    vocab[merged] = len(vocab)
                    merges.append((current, char))
                current = merged
    tokenizer = tokenizers.Tokenizer(models.BPE(vocab=vocab, merges=merges))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens(LEADING_SPECIALS + IMAGE_SPECIALS + [END_OF_UTTERANCE])
    return tokenizer


def build_tiny_checkpoint(out_dir: Path, *, seed: int = 0) -> Path:
    """Save a tiny random Idefics3ForConditionalGeneration with its processor into ``out_dir``."""
    torch = require("torch", extra="export", purpose="Building the tiny SmolVLM model")
    transformers = require("transformers", extra="export", purpose="Building the tiny SmolVLM model")
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    raw_tokenizer = build_tokenizer()
    fast_tokenizer = transformers.PreTrainedTokenizerFast(
        tokenizer_object=raw_tokenizer,
        bos_token="<|im_start|>",
        eos_token=END_OF_UTTERANCE,
        pad_token="<|im_end|>",
        unk_token="<|endoftext|>",
        additional_special_tokens=["<fake_token_around_image>", "<image>", END_OF_UTTERANCE],
    )
    vocab_size = raw_tokenizer.get_vocab_size()
    image_token_id = raw_tokenizer.token_to_id("<image>")
    eos_id = raw_tokenizer.token_to_id(END_OF_UTTERANCE)
    pad_id = raw_tokenizer.token_to_id("<|im_end|>")
    bos_id = raw_tokenizer.token_to_id("<|im_start|>")

    config = transformers.Idefics3Config(
        image_token_id=image_token_id,
        scale_factor=2,
        tie_word_embeddings=False,
        text_config={
            "model_type": "llama",
            "vocab_size": vocab_size,
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 4,
            "num_key_value_heads": 2,
            "head_dim": 16,
            "max_position_embeddings": 2048,
            "rms_norm_eps": 1e-5,
            "rope_theta": 100000.0,
            "pad_token_id": pad_id,
            "bos_token_id": bos_id,
            "eos_token_id": eos_id,
            "tie_word_embeddings": False,
        },
        vision_config={
            "hidden_size": 32,
            "intermediate_size": 64,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": TINY_TILE_SIZE,
            "patch_size": 8,
        },
    )
    torch.manual_seed(seed)
    model = transformers.Idefics3ForConditionalGeneration(config).eval()
    with torch.no_grad():
        # A wide init so a random model produces varied tokens instead of one repeated token.
        for parameter in model.parameters():
            if parameter.dim() >= 2:
                parameter.normal_(0.0, 0.3)
    model.generation_config.bos_token_id = bos_id
    model.generation_config.eos_token_id = eos_id
    model.generation_config.pad_token_id = pad_id
    model.save_pretrained(out_dir)

    image_processor = Idefics3ImageProcessorPil(
        size={"longest_edge": TINY_LONGEST_EDGE},
        max_image_size={"longest_edge": TINY_TILE_SIZE},
    )
    image_seq_len = (TINY_TILE_SIZE // 8) ** 2 // (2**2)
    processor = transformers.Idefics3Processor(
        image_processor=image_processor,
        tokenizer=fast_tokenizer,
        image_seq_len=image_seq_len,
        chat_template=SMOLVLM_CHAT_TEMPLATE,
    )
    processor.save_pretrained(out_dir)
    return out_dir


def reference_generate(checkpoint_dir: Path, images, prompt: str, max_new_tokens: int) -> list[list[int]]:
    """PyTorch greedy generation (transformers ``generate``), one batch, left padding."""
    torch = require("torch", extra="torch", purpose="The SmolVLM reference generation")
    transformers = require("transformers", extra="torch", purpose="The SmolVLM reference generation")

    processor = transformers.AutoProcessor.from_pretrained(checkpoint_dir, backend="pil")
    model = transformers.Idefics3ForConditionalGeneration.from_pretrained(checkpoint_dir).eval()
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": prompt}]}]
    text = processor.apply_chat_template(messages, add_generation_prompt=True)
    processor.tokenizer.padding_side = "left"
    inputs = processor(
        text=[text] * len(images), images=[[image] for image in images], padding=True, return_tensors="pt"
    )
    with torch.no_grad():
        output = model.generate(**inputs, max_new_tokens=max_new_tokens, do_sample=False)
    eos_ids = set(_as_list(model.generation_config.eos_token_id))
    prompt_length = inputs["input_ids"].shape[1]
    results = []
    for row in output[:, prompt_length:].tolist():
        # generate() pads finished rows after their EOS; cut at the first EOS.
        ids = []
        for token in row:
            if token in eos_ids:
                break
            ids.append(token)
        results.append(ids)
    return results


def _as_list(value) -> list[int]:
    if value is None:
        return []
    return [value] if isinstance(value, int) else list(value)
