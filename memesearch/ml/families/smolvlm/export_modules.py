"""Export-only torch modules that split an Idefics3ForConditionalGeneration into three graphs.

They reuse the model's own layers and weights and only rewrite the glue that the legacy
(TorchScript) ONNX exporter cannot trace faithfully:

* the vision position ids use ``torch.bucketize``, which has no ONNX export; here it is the
  equivalent "count the boundaries <= x" comparison;
* attention masks are built directly as additive float masks (finite minimum, never -inf, so
  fully padded rows cannot turn into NaN) instead of through transformers' masking helpers,
  whose shortcuts depend on the data seen while tracing;
* the KV cache is a plain list of tensors, so ``past_key_values.{i}.key/value`` and
  ``present.{i}.key/value`` become graph inputs and outputs.

Import only from the exporter: this module imports torch at import time.
"""

from __future__ import annotations

import torch
from torch import nn


def _additive_mask(allowed: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    zero = torch.zeros((), dtype=dtype)
    minimum = torch.full((), torch.finfo(dtype).min, dtype=dtype)
    return torch.where(allowed, zero, minimum)


def vision_embeddings(embeddings: nn.Module, pixel_values: torch.Tensor, patch_mask: torch.Tensor) -> torch.Tensor:
    """``Idefics3VisionEmbeddings.forward`` with ``torch.bucketize`` written as a comparison."""
    batch_size = pixel_values.shape[0]
    patch_embeds = embeddings.patch_embedding(pixel_values)
    hidden = patch_embeds.flatten(2).transpose(1, 2)

    per_side = embeddings.num_patches_per_side
    boundaries = torch.arange(1 / per_side, 1.0, 1 / per_side, device=pixel_values.device)
    patches_h = patch_mask[:, :, 0].sum(dim=1)
    patches_w = patch_mask[:, 0, :].sum(dim=1)
    h_indices = torch.arange(patch_mask.shape[1], device=pixel_values.device, dtype=torch.float32)
    w_indices = torch.arange(patch_mask.shape[2], device=pixel_values.device, dtype=torch.float32)
    coords_h = torch.clamp(h_indices[None, :] * (1.0 / patches_h)[:, None], max=1.0 - 1e-6)
    coords_w = torch.clamp(w_indices[None, :] * (1.0 / patches_w)[:, None], max=1.0 - 1e-6)
    # bucketize(x, boundaries, right=True) == number of boundaries <= x
    bucket_h = (coords_h[..., None] >= boundaries).sum(dim=-1)
    bucket_w = (coords_w[..., None] >= boundaries).sum(dim=-1)
    position_ids = (bucket_h[:, :, None] * per_side + bucket_w[:, None, :]).reshape(batch_size, -1)
    position_ids = torch.where(patch_mask.reshape(batch_size, -1), position_ids, torch.zeros_like(position_ids))
    return hidden + embeddings.position_embedding(position_ids)


class VisionEncoderExport(nn.Module):
    """pixel_values (B, N, 3, H, W), pixel_attention_mask (B, N, H, W) -> image_features."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.vision = model.model.vision_model
        self.connector = model.model.connector
        self.patch_size = model.config.vision_config.patch_size

    def forward(self, pixel_values: torch.Tensor, pixel_attention_mask: torch.Tensor) -> torch.Tensor:
        batch, images, channels, height, width = pixel_values.shape
        pixels = pixel_values.reshape(batch * images, channels, height, width)
        pixel_mask = pixel_attention_mask.reshape(batch * images, height, width)
        # Padding images are all zeros; transformers drops them before the vision tower.
        real = (pixels != 0).flatten(1).any(dim=1)
        pixels = pixels[real]
        pixel_mask = pixel_mask[real]

        size = self.patch_size
        grid = pixel_mask.reshape(pixel_mask.shape[0], height // size, size, width // size, size)
        patch_mask = grid.any(dim=4).any(dim=2)

        hidden = vision_embeddings(self.vision.embeddings, pixels, patch_mask)
        flat_mask = patch_mask.reshape(patch_mask.shape[0], -1)
        attention_mask = _additive_mask(flat_mask[:, None, None, :], hidden.dtype)
        hidden = self.vision.encoder(inputs_embeds=hidden, attention_mask=attention_mask).last_hidden_state
        hidden = self.vision.post_layernorm(hidden)
        return self.connector(hidden)


class EmbedTokensExport(nn.Module):
    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.embed_tokens = model.get_input_embeddings()

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.embed_tokens(input_ids)


class _ListCache:
    """Duck-typed cache: concatenates the given past with the new keys/values per layer."""

    def __init__(self, past: list[torch.Tensor]) -> None:
        self.past = past
        self.present: list[torch.Tensor] = []

    def update(self, key: torch.Tensor, value: torch.Tensor, layer_idx: int, *args, **kwargs):
        key = torch.cat([self.past[2 * layer_idx], key], dim=2)
        value = torch.cat([self.past[2 * layer_idx + 1], value], dim=2)
        self.present.extend([key, value])
        return key, value


class DecoderExport(nn.Module):
    """inputs_embeds, attention_mask (past + new), position_ids, past -> last-position logits, present."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.text = model.model.text_model
        self.lm_head = model.lm_head

    def forward(self, inputs_embeds, attention_mask, position_ids, *past):
        new_tokens = inputs_embeds.shape[1]
        total = attention_mask.shape[1]
        query_positions = torch.arange(new_tokens, device=inputs_embeds.device) + (total - new_tokens)
        key_positions = torch.arange(total, device=inputs_embeds.device)
        causal = key_positions[None, :] <= query_positions[:, None]
        allowed = causal[None, None, :, :] & attention_mask[:, None, None, :].bool()
        mask = _additive_mask(allowed, inputs_embeds.dtype)

        cache = _ListCache(list(past))
        hidden = inputs_embeds
        position_embeddings = self.text.rotary_emb(hidden, position_ids=position_ids)
        for layer in self.text.layers:
            hidden = layer(
                hidden,
                attention_mask=mask,
                position_ids=position_ids,
                cache=cache,
                use_cache=True,
                position_embeddings=position_embeddings,
            )
        # Logits of the last position only: generation needs nothing else, and over a prompt of
        # ~1000 image tokens the full (seq, 49280) logits cost ~20% of the prefill and ~400 MB.
        logits = self.lm_head(self.text.norm(hidden[:, -1:, :]))
        return (logits, *cache.present)
