"""A random Moondream with the component interfaces of the 0.0.x ``.mf`` bundles.

The real bundles only ship ONNX graphs (no torch checkpoint of that format exists), so
this is our own torch modules with the same inputs, outputs, dtypes and shapes (see
memesearch/ml/families/moondream/onnx_backend.py): a float16 crop encoder with 14-px patches, a projection
of the 2C concatenated features, an embedding table, and a decoder taking/returning a
(layers, 2, 1, heads, positions, head_dim) float16 KV cache with ``logits`` of the last
position. The layout follows Moondream 2 (vikhyat/moondream ``moondream/torch``):
pre-norm SigLIP-style vision blocks, a 2-layer GELU projection MLP, and Phi-1.5-style text
blocks (attention and MLP in parallel off one LayerNorm, rotary positions on the first
``rotary_dim`` dims of each head, counted from the cache length). The decoder is causal.

Every size is a parameter (``TINY``, ``MOONDREAM2``). The tiny model (std 0.3 weights so
greedy output varies) has 56-px crops (4x4 = 16 tokens) instead of 378 px (27x27 = 729):
with 729 near-random image tokens the tiny decoder's attention barely sees the generated
tokens, so a broken KV cache would go unnoticed. The captioner reads the crop size from the
vision encoder's static input shape; preprocessing at 378 px is tested on its own.
``MOONDREAM2`` has the real shapes (PyTorch default init): it costs what the real model
costs to run, which is all the speed benchmark (bench/vlm_models.py) needs.

``Reference``/``reference_generate`` run these torch modules directly, with a torch
re-implementation of the client's preprocessing (``reference_crops``/``reference_merge``),
so the ONNX captioner is checked against an independent path computed from the same weights.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

from memesearch.errors import require

# torch-only module: without torch its import fails here, naming the extra to install.
require("torch", extra="torch", purpose="The tiny Moondream model")

#: Checkpoint files and bundle graphs, one per component.
COMPONENTS = ("vision_encoder", "vision_projection", "text_encoder", "text_decoder")
#: rotary_dim None = the whole head; vocab_size None = the tokenizer's; init_std None = torch's default init.
TINY = dict(crop_size=56, patch=14, vision_dim=32, vision_heads=4, vision_layers=1, vision_mlp=96,
            proj_inner=96, text_dim=48, text_heads=4, text_layers=2, text_mlp=96,
            rotary_dim=None, vocab_size=None, init_std=0.3)
#: Moondream 2 (2024/2025 revisions; moondream/config/config_md2.json and the HF PhiConfig):
#: SigLIP-so400m-style vision at 378 px, projection 2*1152 -> 8192 -> 2048, Phi-1.5 text
#: (partial_rotary_factor 0.5 of head_dim 64), vocab 51200.
MOONDREAM2 = dict(crop_size=378, patch=14, vision_dim=1152, vision_heads=16, vision_layers=27, vision_mlp=4304,
                  proj_inner=8192, text_dim=2048, text_heads=32, text_layers=24, text_mlp=8192,
                  rotary_dim=32, vocab_size=51200, init_std=None)
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


def _modules(cfg: dict, vocab_size: int, names=COMPONENTS):
    """The torch modules named ``names`` (built on the current default device)."""
    torch = require("torch", extra="torch", purpose="The tiny Moondream")
    nn, F = torch.nn, torch.nn.functional

    class Attention(nn.Module):
        def __init__(self, dim: int, heads: int) -> None:
            super().__init__()
            self.heads, self.qkv, self.out = heads, nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)

        def split(self, x):  # (b, n, dim) -> 3 x (b, heads, n, head_dim)
            b, n, _ = x.shape
            return self.qkv(x).view(b, n, 3, self.heads, -1).permute(2, 0, 3, 1, 4).unbind(0)

        def merge(self, attn, shape):
            return self.out(attn.transpose(1, 2).reshape(shape))

    class MLP(nn.Module):
        def __init__(self, dim: int, inner: int, out: int | None = None) -> None:
            super().__init__()
            self.up, self.down = nn.Linear(dim, inner), nn.Linear(inner, out or dim)

        def forward(self, x):
            return self.down(F.gelu(self.up(x), approximate="tanh"))

    class VisionBlock(nn.Module):  # SigLIP: pre-norm attention, then pre-norm MLP
        def __init__(self) -> None:
            super().__init__()
            dim = cfg["vision_dim"]
            self.norm1, self.attn = nn.LayerNorm(dim), Attention(dim, cfg["vision_heads"])
            self.norm2, self.mlp = nn.LayerNorm(dim), MLP(dim, cfg["vision_mlp"])

        def forward(self, x):
            q, k, v = self.attn.split(self.norm1(x))
            x = x + self.attn.merge(F.scaled_dot_product_attention(q, k, v), x.shape)
            return x + self.mlp(self.norm2(x))

    class VisionEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            dim, grid = cfg["vision_dim"], cfg["crop_size"] // cfg["patch"]
            self.patchify = nn.Conv2d(3, dim, cfg["patch"], stride=cfg["patch"])
            self.position = nn.Parameter(torch.zeros(grid * grid, dim))
            self.blocks = nn.ModuleList(VisionBlock() for _ in range(cfg["vision_layers"]))
            self.norm = nn.LayerNorm(dim)

        def forward(self, pixels):
            x = self.patchify(pixels.float()).flatten(2).transpose(1, 2) + self.position
            for block in self.blocks:
                x = block(x)
            return self.norm(x).half()

    class VisionProjection(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.mlp = MLP(2 * cfg["vision_dim"], cfg["proj_inner"], cfg["text_dim"])  # 2C -> inner -> text width

        def forward(self, features):
            return self.mlp(features.float()).half()

    class TextEncoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.embed = nn.Embedding(vocab_size, cfg["text_dim"])

        def forward(self, input_ids):
            return self.embed(input_ids).half()

    class TextBlock(nn.Module):  # Phi: attention and MLP in parallel off one LayerNorm
        def __init__(self) -> None:
            super().__init__()
            dim = cfg["text_dim"]
            self.norm, self.attn, self.mlp = nn.LayerNorm(dim), Attention(dim, cfg["text_heads"]), MLP(dim, cfg["text_mlp"])

    class TextDecoder(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            dim, heads = cfg["text_dim"], cfg["text_heads"]
            self.blocks = nn.ModuleList(TextBlock() for _ in range(cfg["text_layers"]))
            self.norm, self.lm_head = nn.LayerNorm(dim), nn.Linear(dim, vocab_size)
            self.head_dim = dim // heads
            self.rotary_dim = cfg["rotary_dim"] or self.head_dim
            half = self.rotary_dim // 2
            # A plain CPU tensor, not a buffer: modules built on the meta device keep it real.
            self.inv_freq = 1.0 / 10000 ** (torch.arange(half, device="cpu").float() / half)

        def rotate(self, x, positions):  # rotary on the first rotary_dim dims, the rest passes
            angles = positions[:, None].float() * self.inv_freq[None, :]
            cos, sin = angles.cos(), angles.sin()
            partial = self.rotary_dim < self.head_dim
            rotated = x[..., : self.rotary_dim] if partial else x
            first, second = rotated.chunk(2, dim=-1)
            parts = [first * cos - second * sin, first * sin + second * cos]
            if partial:
                parts.append(x[..., self.rotary_dim :])
            return torch.cat(parts, dim=-1)

        def forward(self, input_embeds, kv_cache):
            x, past = input_embeds.float(), kv_cache.float()
            new_len, past_len = x.shape[1], kv_cache.shape[4]
            positions = torch.arange(new_len) + past_len
            allowed = torch.arange(past_len + new_len)[None, :] <= positions[:, None]
            new_kv = []
            for layer, block in enumerate(self.blocks):
                normed = block.norm(x)
                q, k, v = block.attn.split(normed)
                q, k = self.rotate(q, positions), self.rotate(k, positions)
                new_kv.append(torch.stack([k, v]))
                keys = torch.cat([past[layer, 0], k], dim=2)
                values = torch.cat([past[layer, 1], v], dim=2)
                attn = F.scaled_dot_product_attention(q, keys, values, attn_mask=allowed)
                x = x + block.attn.merge(attn, x.shape) + block.mlp(normed)
            hidden = self.norm(x)
            # A 3-D input keeps the head a MatMul in ONNX, which int8 quantisation covers (Gemm it skips).
            logits = self.lm_head(hidden[:, -1:, :])[:, 0, :]
            return hidden.half(), torch.stack(new_kv).half(), logits

    classes = {"vision_encoder": VisionEncoder, "vision_projection": VisionProjection,
               "text_encoder": TextEncoder, "text_decoder": TextDecoder}
    return {name: classes[name]() for name in names}


def read_architecture(checkpoint_dir: Path) -> tuple[dict, int]:
    """(architecture config, vocabulary size) of a checkpoint."""
    from tokenizers import Tokenizer

    cfg = json.loads((Path(checkpoint_dir) / "tiny_config.json").read_text())
    vocab = cfg["vocab_size"] or Tokenizer.from_file(str(Path(checkpoint_dir) / "tokenizer.json")).get_vocab_size()
    return cfg, vocab


def load_modules(checkpoint_dir: Path, names=COMPONENTS) -> dict:
    """Some components of a checkpoint, in eval mode, weights loaded without a second copy."""
    torch = require("torch", extra="torch", purpose="The tiny Moondream")
    from safetensors.torch import load_file

    checkpoint_dir = Path(checkpoint_dir)
    cfg, vocab = read_architecture(checkpoint_dir)
    with torch.device("meta"):  # no random init of weights that are replaced right away
        modules = _modules(cfg, vocab, names)
    for name, module in modules.items():
        module.load_state_dict(load_file(checkpoint_dir / f"{name}.safetensors"), assign=True)
        module.eval()
    torch.set_grad_enabled(False)
    return modules


def load_tiny_model(checkpoint_dir: Path):
    """(modules by bundle name, tokenizer, bundle config, architecture) from a checkpoint."""
    from tokenizers import Tokenizer

    checkpoint_dir = Path(checkpoint_dir)
    tokenizer = Tokenizer.from_file(str(checkpoint_dir / "tokenizer.json"))
    config = json.loads((checkpoint_dir / "config.json").read_text())
    return load_modules(checkpoint_dir), tokenizer, config, read_architecture(checkpoint_dir)[0]


def build_checkpoint(out_dir: Path, cfg: dict = TINY, *, seed: int = 0) -> Path:
    """Random weights for ``cfg``, one safetensors file per component (built one at a time)."""
    torch = require("torch", extra="torch", purpose="The tiny Moondream")
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = build_tokenizer()
    torch.manual_seed(seed)
    for name in COMPONENTS:
        (module,) = _modules(cfg, cfg["vocab_size"] or tokenizer.get_vocab_size(), [name]).values()
        state = module.state_dict()
        if cfg["init_std"] is not None:
            for key, value in state.items():
                if "norm" in key:  # keep LayerNorms near identity so activations stay in range
                    state[key] = torch.ones_like(value) if key.endswith("weight") else torch.zeros_like(value)
                else:
                    state[key] = torch.randn_like(value) * cfg["init_std"]
        save_file({key: value.contiguous() for key, value in state.items()}, out_dir / f"{name}.safetensors")
        del module, state  # only one component's weights in memory at a time
    (out_dir / "tiny_config.json").write_text(json.dumps(cfg, indent=2))
    tokenizer.save(str(out_dir / "tokenizer.json"))
    (out_dir / "config.json").write_text(json.dumps(bundle_config(tokenizer), indent=2))
    return out_dir


def build_tiny_checkpoint(out_dir: Path, *, seed: int = 0) -> Path:
    return build_checkpoint(out_dir, TINY, seed=seed)


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
    the global crop (see memesearch/ml/families/moondream/preprocess.py).
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
    layers, heads = len(decoder.blocks), decoder.blocks[0].attn.heads
    head_dim = decoder.norm.normalized_shape[0] // heads
    empty = torch.zeros(layers, 2, 1, heads, 0, head_dim, dtype=torch.float16)
    _, kv, _ = decoder(modules["text_encoder"](torch.tensor([[bos_id]])), empty)
    return kv


class Reference:
    """Greedy captions from the torch modules, step by step (the steps are what benchmarks time)."""

    def __init__(self, checkpoint_dir: Path) -> None:
        self.modules, self.tokenizer, self.config, self.cfg = load_tiny_model(checkpoint_dir)
        self.eos = self.config["special_tokens"]["eos"]
        self.bos_kv = initial_kv_cache(self.modules, self.config["special_tokens"]["bos"])

    def prompt_ids(self, prompt: str) -> list[int]:
        templates = self.config["templates"]
        if prompt in templates["caption"]:
            return templates["caption"][prompt]
        return templates["query"]["prefix"] + self.tokenizer.encode(prompt).ids + templates["query"]["suffix"]

    def embed(self, ids: list[int]):
        torch = require("torch", extra="torch", purpose="The tiny Moondream")
        return self.modules["text_encoder"](torch.tensor([ids]))

    def encode_image(self, image):
        """KV cache after BOS and the image tokens."""
        torch = require("torch", extra="torch", purpose="The tiny Moondream")
        crops, grid = reference_crops(image, self.cfg["crop_size"])
        merged = reference_merge(self.modules["vision_encoder"](crops), grid)
        _, image_kv, _ = self.modules["text_decoder"](self.modules["vision_projection"](merged[None]), self.bos_kv)
        return torch.cat([self.bos_kv, image_kv], dim=4)

    def step(self, embeds, kv):
        """(logits of the last position, the cache grown by the new positions)."""
        torch = require("torch", extra="torch", purpose="The tiny Moondream")
        _, new_kv, logits = self.modules["text_decoder"](embeds, kv)
        return logits, torch.cat([kv, new_kv], dim=4)

    def generate(self, image, prompt: str, max_new_tokens: int, *, stop_at_eos: bool = True) -> list[int]:
        kv, inputs, tokens = self.encode_image(image), self.embed(self.prompt_ids(prompt)), []
        while len(tokens) < max_new_tokens:
            logits, kv = self.step(inputs, kv)
            token = int(logits[0].argmax())
            if token == self.eos and stop_at_eos:
                break
            tokens.append(token)
            inputs = self.embed([token])
        return tokens


def reference_generate(checkpoint_dir: Path, images, prompt: str = TINY_PROMPT, max_new_tokens: int = 20) -> list[list[int]]:
    reference = Reference(checkpoint_dir)
    return [reference.generate(image, prompt, max_new_tokens) for image in images]
