"""The torch modules we trace: one per ONNX file, inputs and outputs as plain tensors."""

from __future__ import annotations

from memesearch.errors import require

_torch = require("torch", extra="export", purpose="Exporting Florence-2 to ONNX")
_nn = _torch.nn


def cache_names(layers: int) -> tuple[list[str], list[str]]:
    """past_key_values.* inputs and present.* outputs, in the community order."""
    past, present = [], []
    for layer in range(layers):
        for part in ("decoder.key", "decoder.value", "encoder.key", "encoder.value"):
            past.append(f"past_key_values.{layer}.{part}")
            present.append(f"present.{layer}.{part}")
    return past, present


class VisionEncoder(_nn.Module):
    """pixel_values -> image_features (DaViT + projection, the features the encoder reads)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixel_values):
        return self.model.get_image_features(pixel_values).pooler_output


class EmbedTokens(_nn.Module):
    """input_ids -> inputs_embeds (BART's shared, possibly scaled, embedding)."""

    def __init__(self, model) -> None:
        super().__init__()
        self.embed = model.get_input_embeddings()

    def forward(self, input_ids):
        return self.embed(input_ids)


class TextEncoder(_nn.Module):
    """[image features, prompt embeddings] + mask -> last_hidden_state."""

    def __init__(self, model) -> None:
        super().__init__()
        self.encoder = model.model.language_model.encoder

    def forward(self, inputs_embeds, attention_mask):
        return self.encoder(inputs_embeds=inputs_embeds, attention_mask=attention_mask).last_hidden_state


def _flatten_cache(cache, layers: int) -> list:
    flat = []
    for layer in range(layers):
        self_layer = cache.self_attention_cache.layers[layer]
        cross_layer = cache.cross_attention_cache.layers[layer]
        flat += [self_layer.keys, self_layer.values, cross_layer.keys, cross_layer.values]
    return flat


class _Decoder(_nn.Module):
    """The BART decoder and LM head: logits and the flattened cache after one step."""

    def __init__(self, model, layers: int) -> None:
        super().__init__()
        self.decoder = model.model.language_model.decoder
        self.lm_head = model.lm_head
        self.layers = layers

    def _step(self, inputs_embeds, encoder_hidden_states, encoder_attention_mask, cache):
        output = self.decoder(
            inputs_embeds=inputs_embeds,
            encoder_hidden_states=encoder_hidden_states,
            encoder_attention_mask=encoder_attention_mask,
            cache=cache,
            use_cache=True,
        )
        return (self.lm_head(output.last_hidden_state), *_flatten_cache(output.cache, self.layers))


class DecoderWithoutCache(_Decoder):
    """First step: computes self- and cross-attention keys/values from scratch."""

    def __init__(self, model) -> None:
        super().__init__(model, model.config.text_config.decoder_layers)

    def forward(self, inputs_embeds, encoder_hidden_states, encoder_attention_mask):
        transformers = require("transformers", extra="export", purpose="Exporting Florence-2 to ONNX")
        cache = transformers.EncoderDecoderCache(transformers.DynamicCache(), transformers.DynamicCache())
        return self._step(inputs_embeds, encoder_hidden_states, encoder_attention_mask, cache)


class DecoderWithCache(_Decoder):
    """Later steps: appends to the self-attention cache, reuses the cross-attention one."""

    def forward(self, inputs_embeds, encoder_hidden_states, encoder_attention_mask, *past):
        transformers = require("transformers", extra="export", purpose="Exporting Florence-2 to ONNX")
        per_layer = [tuple(past[4 * layer : 4 * layer + 4]) for layer in range(self.layers)]
        cache = transformers.EncoderDecoderCache(per_layer)
        for layer in range(self.layers):
            cache.is_updated[layer] = True  # never recompute cross-attention from the encoder states
        return self._step(inputs_embeds, encoder_hidden_states, encoder_attention_mask, cache)
