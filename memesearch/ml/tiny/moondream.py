"""A tiny random Moondream with the component interfaces of the 0.0.x ``.mf`` bundles.

The real bundles only ship ONNX graphs (no torch checkpoint of that format exists), so
the tiny model is our own small torch modules with the same inputs, outputs, dtypes and
shapes (see memesearch/ml/onnx/moondream.py): a float16 crop encoder with 14-px patches,
a projection of the 2C concatenated features, an embedding table, and a decoder
taking/returning a (layers, 2, 1, heads, positions, head_dim) float16 KV cache with
``logits`` of the last position. The decoder is causal with rotary positions counted
from the cache length. Weights use std 0.3 so greedy output varies.

Crops are 56 px (4x4 = 16 tokens) instead of the real 378 px (27x27 = 729): with 729
near-random image tokens the tiny decoder's attention barely sees the generated tokens,
so a broken KV cache would go unnoticed. The captioner reads the crop size from the
vision encoder's static input shape; preprocessing at 378 px is tested on its own.

``reference_generate`` runs these torch modules directly, with a torch re-implementation
of the client's preprocessing (``reference_crops``/``reference_merge``), so the ONNX
captioner is checked against an independent path computed from the same weights.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from memesearch.errors import require

TINY = dict(crop_size=56, patch=14, vision_dim=32, vision_heads=4, text_dim=48, text_heads=4,
            text_layers=2, proj_inner=96, mlp_inner=96)
EOS_TOKEN = "<|endoftext|>"
#: Merges of the explicit tiny vocabulary (byte-level BPE like moondream's GPT-2 tokenizer).
MERGES = [("Ċ", "Ċ"), ("Ġ", "c"), ("a", "p"), ("t", "i"), ("o", "n"), ("ti", "on"), ("Ġc", "ap"),
          ("Ġcap", "tion"), ("S", "h"), ("Sh", "o"), ("Sho", "r"), ("Shor", "t"), ("Ġ", "t"), ("h", "e"),
          ("Ġt", "he"), ("Ġ", "a"), ("i", "n"), ("Q", "u"), ("A", "n"), ("e", "s")]
TINY_PROMPT = "short"


def build_tokenizer():
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers

    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {symbol: index for index, symbol in enumerate(alphabet)}
    for left, right in MERGES:
        vocab[left + right] = len(vocab)
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=MERGES))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.add_special_tokens([EOS_TOKEN])
    return tokenizer


def bundle_config(tokenizer) -> dict:
    """config.json of the bundle: moondream's template texts encoded with the tiny vocabulary."""
    ids = lambda text: tokenizer.encode(text).ids  # noqa: E731
    eos = tokenizer.token_to_id(EOS_TOKEN)
    return {
        "special_tokens": {"bos": eos, "eos": eos},
        "templates": {
            "caption": {"short": ids("\n\nShort caption:"), "normal": ids("\n\nCaption:")},
            "query": {"prefix": ids("\n\nQuestion:"), "suffix": ids("\n\nAnswer:")},
        },
    }


def _modules(cfg: dict, vocab_size: int):
    torch = require("torch", extra="torch", purpose="The tiny Moondream")
    nn, F = torch.nn, torch.nn.functional

    class Block(nn.Module):
        def __init__(self, dim: int, heads: int, inner: int) -> None:
            super().__init__()
            self.heads, self.norm = heads, nn.LayerNorm(dim)
            self.qkv, self.out = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
            self.up, self.down = nn.Linear(dim, inner), nn.Linear(inner, dim)

        def split(self, x):  # (b, n, 3*dim) -> 3 x (b, heads, n, head_dim)
            b, n, _ = x.shape
            return x.view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4)

        def mix(self, x, normed, attn):  # parallel attention + MLP, as in phi/moondream
            merged = attn.transpose(1, 2).reshape(x.shape)
            return x + self.out(merged) + self.down(F.gelu(self.up(normed), approximate="tanh"))

    class VisionEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            dim, grid = cfg["vision_dim"], cfg["crop_size"] // cfg["patch"]
            self.patchify = nn.Conv2d(3, dim, cfg["patch"], stride=cfg["patch"])
            self.position = nn.Parameter(torch.zeros(grid * grid, dim))
            self.block, self.norm = Block(dim, cfg["vision_heads"], cfg["mlp_inner"]), nn.LayerNorm(dim)

        def forward(self, pixels):
            x = self.patchify(pixels.float()).flatten(2).transpose(1, 2) + self.position
            normed = self.block.norm(x)
            q, k, v = self.block.split(self.block.qkv(normed)).unbind(0)
            x = self.block.mix(x, normed, F.scaled_dot_product_attention(q, k, v))
            return self.norm(x).half()

    class VisionProjection(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.fc1 = nn.Linear(2 * cfg["vision_dim"], cfg["proj_inner"])
            self.fc2 = nn.Linear(cfg["proj_inner"], cfg["text_dim"])

        def forward(self, features):
            return self.fc2(F.gelu(self.fc1(features.float()), approximate="tanh")).half()

    class TextEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(vocab_size, cfg["text_dim"])

        def forward(self, input_ids):
            return self.embed(input_ids).half()

    class TextDecoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            dim = cfg["text_dim"]
            self.blocks = nn.ModuleList(Block(dim, cfg["text_heads"], cfg["mlp_inner"]) for _ in range(cfg["text_layers"]))
            self.norm, self.lm_head = nn.LayerNorm(dim), nn.Linear(dim, vocab_size)
            half = dim // cfg["text_heads"] // 2
            self.register_buffer("inv_freq", 1.0 / 10000 ** (torch.arange(half).float() / half), persistent=False)

        def rotate(self, x, positions):
            angles = positions[:, None].float() * self.inv_freq[None, :]
            cos, sin = angles.cos(), angles.sin()
            first, second = x.chunk(2, dim=-1)
            return torch.cat([first * cos - second * sin, first * sin + second * cos], dim=-1)

        def forward(self, input_embeds, kv_cache):
            x, past = input_embeds.float(), kv_cache.float()
            new_len, past_len = x.shape[1], kv_cache.shape[4]
            positions = torch.arange(new_len) + past_len
            allowed = torch.arange(past_len + new_len)[None, :] <= positions[:, None]
            new_kv = []
            for layer, block in enumerate(self.blocks):
                normed = block.norm(x)
                q, k, v = block.split(block.qkv(normed)).unbind(0)
                k = self.rotate(k, positions)
                new_kv.append(torch.stack([k, v]))
                keys = torch.cat([past[layer, 0], k], dim=2)
                values = torch.cat([past[layer, 1], v], dim=2)
                attn = F.scaled_dot_product_attention(q, keys, values, attn_mask=allowed)
                x = block.mix(x, normed, attn)
            hidden = self.norm(x)
            logits = self.lm_head(hidden[:, -1, :])
            return hidden.half(), torch.stack(new_kv).half(), logits

    return {"vision_encoder": VisionEncoder(), "vision_projection": VisionProjection(),
            "text_encoder": TextEncoder(), "text_decoder": TextDecoder()}


def load_tiny_model(checkpoint_dir: Path):
    """(modules by bundle name, tokenizer, bundle config, architecture) from a tiny checkpoint."""
    torch = require("torch", extra="torch", purpose="The tiny Moondream")
    from safetensors.torch import load_file
    from tokenizers import Tokenizer

    checkpoint_dir = Path(checkpoint_dir)
    cfg = json.loads((checkpoint_dir / "tiny_config.json").read_text())
    tokenizer = Tokenizer.from_file(str(checkpoint_dir / "tokenizer.json"))
    modules = _modules(cfg, tokenizer.get_vocab_size())
    state = load_file(checkpoint_dir / "model.safetensors")
    for name, module in modules.items():
        module.load_state_dict({key.split(".", 1)[1]: value for key, value in state.items() if key.startswith(name + ".")})
        module.eval()
    torch.set_grad_enabled(False)
    return modules, tokenizer, json.loads((checkpoint_dir / "config.json").read_text()), cfg


def build_tiny_checkpoint(out_dir: Path, *, seed: int = 0) -> Path:
    torch = require("torch", extra="torch", purpose="The tiny Moondream")
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    modules = _modules(TINY, tokenizer.get_vocab_size())
    state = {}
    for name, module in modules.items():
        for key, value in module.state_dict().items():
            if "norm" in key:  # keep LayerNorms near identity so activations stay in range
                value = torch.ones_like(value) if key.endswith("weight") else torch.zeros_like(value)
            else:
                value = torch.randn_like(value) * 0.3
            state[f"{name}.{key}"] = value.contiguous()
    save_file(state, out_dir / "model.safetensors")
    (out_dir / "tiny_config.json").write_text(json.dumps(TINY, indent=2))
    tokenizer.save(str(out_dir / "tokenizer.json"))
    (out_dir / "config.json").write_text(json.dumps(bundle_config(tokenizer), indent=2))
    return out_dir


# -- the PyTorch reference -------------------------------------------------------------
def reference_crops(image, crop_size: int):
    """Torch version of the client's create_patches: (float16 crops, (rows, cols))."""
    torch = require("torch", extra="torch", purpose="The tiny Moondream")
    from PIL import Image

    image = image.convert("RGB")
    width, height = image.size
    templates = [(1, 2), (2, 1), (2, 2)]
    if max(width, height) < crop_size * 1.4:
        grid = (1, 1)
    else:
        errors = [abs(cols / rows - width / height) for rows, cols in templates]
        grid = templates[errors.index(min(errors))]
    boxes = [None]
    if grid != (1, 1):
        tile_w, tile_h = width // grid[1], height // grid[0]
        boxes += [(c * tile_w, r * tile_h, c * tile_w + tile_w, r * tile_h + tile_h)
                  for r in range(grid[0]) for c in range(grid[1])]
    crops = []
    for box in boxes:
        part = image if box is None else image.crop(box)
        pixels = torch.frombuffer(bytearray(part.resize((crop_size, crop_size), Image.BICUBIC).tobytes()),
                                  dtype=torch.uint8).view(crop_size, crop_size, 3)
        crops.append(((pixels.double() / 255.0 - 0.5) / 0.5).permute(2, 0, 1))
    return torch.stack(crops).half(), grid


def reference_merge(features, grid):
    """Torch version of the client's crop-feature merge (adaptive average pooling).

    Like the client, tile (r, c) takes encoder output ``r * cols + c``, which starts at
    the global crop (see memesearch/ml/onnx/moondream_preprocess.py).
    """
    torch = require("torch", extra="torch", purpose="The tiny Moondream")
    global_features = features[0]
    if grid == (1, 1):
        return torch.cat([global_features, global_features], dim=-1)
    side = math.isqrt(features.shape[1])
    rows = [torch.cat([features[r * grid[1] + c].view(side, side, -1) for c in range(grid[1])], dim=1)
            for r in range(grid[0])]
    stitched = torch.cat(rows, dim=0).permute(2, 0, 1).float()
    pooled = torch.nn.functional.adaptive_avg_pool2d(stitched, (side, side)).half()
    return torch.cat([global_features, pooled.permute(1, 2, 0).reshape(side * side, -1)], dim=-1)


def initial_kv_cache(modules, bos_id: int):
    """The BOS token's cache, as stored in a bundle's initial_kv_cache.npy."""
    torch = require("torch", extra="torch", purpose="The tiny Moondream")
    decoder = modules["text_decoder"]
    layers, heads = len(decoder.blocks), decoder.blocks[0].heads
    head_dim = decoder.norm.normalized_shape[0] // heads
    empty = torch.zeros(layers, 2, 1, heads, 0, head_dim, dtype=torch.float16)
    _, kv, _ = decoder(modules["text_encoder"](torch.tensor([[bos_id]])), empty)
    return kv


def reference_generate(checkpoint_dir: Path, images, prompt: str = TINY_PROMPT, max_new_tokens: int = 20) -> list[list[int]]:
    torch = require("torch", extra="torch", purpose="The tiny Moondream")
    modules, tokenizer, config, cfg = load_tiny_model(checkpoint_dir)
    templates, eos = config["templates"], config["special_tokens"]["eos"]
    if prompt in templates["caption"]:
        prompt_ids = templates["caption"][prompt]
    else:
        prompt_ids = templates["query"]["prefix"] + tokenizer.encode(prompt).ids + templates["query"]["suffix"]
    decoder, embed = modules["text_decoder"], modules["text_encoder"]
    outputs = []
    for image in images:
        crops, grid = reference_crops(image, cfg["crop_size"])
        merged = reference_merge(modules["vision_encoder"](crops), grid)
        kv = initial_kv_cache(modules, config["special_tokens"]["bos"])
        _, image_kv, _ = decoder(modules["vision_projection"](merged[None]), kv)
        kv = torch.cat([kv, image_kv], dim=4)
        inputs, tokens = embed(torch.tensor([prompt_ids])), []
        while len(tokens) < max_new_tokens:
            _, new_kv, logits = decoder(inputs, kv)
            kv = torch.cat([kv, new_kv], dim=4)
            token = int(logits[0].argmax())
            if token == eos:
                break
            tokens.append(token)
            inputs = embed(torch.tensor([[token]]))
        outputs.append(tokens)
    return outputs
