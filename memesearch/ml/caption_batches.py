"""Describing many memes at once: images go to the caption model in batches.

A decoder step reads all its weights once whatever the batch, so decoding 4 memes together
costs less than decoding them one by one (docs/BENCHMARKS.md, "bulk describe"). Batching
must change only the speed, never a caption, so it is used only where a batch's output
equals one-at-a-time output token for token (tests/models/test_caption_batches.py): fp32
graphs and torch, and SmolVLM's per-row int8 decoder (models.yml ``int8_decoder: per_row``, as
smolvlm-256m asks), whose 8-bit MatMulNBits quantise each row's activations alone
(``quantize_matmuls_8bit_rows``; checked on this CPU by ``onnx_runtime/row_exact.py``). Other
int8 graphs (SmolVLM's per-tensor and community decoders, Florence-2, Moondream) quantise each
MatMul's activations with ONE scale for the whole input tensor (ORT's DynamicQuantizeLinear),
so a meme's tokens would depend on which other memes share its batch: they caption one meme
per call (``Captioner.batches_exactly``).
Caption streams (memesearch.ml.caption_streams) run several model calls at once through the
same loaded model, so a chunk handed to the captioner is its batch size times its streams.

One bad image must not fail the others: when a batch raises, its images are retried one at a
time, so the error lands on the image that caused it and the rest get their captions. The ML
service's client (memesearch.ml.remote) reports each image's error itself, so nothing is
retried there, and an unreachable service is every image's error at once (each would wait for
the same service; the jobs layer retries them later).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from PIL import Image

from memesearch.errors import MemeSearchError
log = logging.getLogger(__name__)


def batch_size_of(captioner) -> int:
    """How many images to hand the captioner at once: once loaded (the first call, with one
    image, loads it and so decides the weight type), the memes one model call takes
    (``Captioner.call_batch``: 1 for weight types whose results would depend on the batch, see
    the module docstring) times its streams (batches run at once, memesearch.ml.caption_streams)."""
    if not getattr(captioner, "is_loaded", False):
        return 1
    return captioner.call_batch * max(1, int(getattr(captioner, "streams", 1) or 1))


def caption_each(captioner, images: Sequence[Image.Image]) -> list:
    """One entry per image: its caption result, or the MemeSearchError that image raised.

    ``captioner`` is a ChainCaptioner (``caption_images``) or a RemoteCaptioner (``caption_outcomes``).
    Errors that are not MemeSearchError (bugs) propagate, as they did one image at a time."""
    from memesearch.ml.remote import ServiceUnavailableError

    images = list(images)
    if not images:
        return []
    try:
        outcomes = getattr(captioner, "caption_outcomes", None)
        return list(outcomes(images) if outcomes is not None else captioner.caption_images(images))
    except ServiceUnavailableError as exc:
        return [exc] * len(images)
    except MemeSearchError as exc:
        if len(images) == 1:
            return [exc]
        log.info("a batch of %d captions failed (%s); retrying its images one at a time", len(images), exc)
    results: list = []
    for image in images:
        try:
            results.append(captioner.caption_images([image])[0])
        except MemeSearchError as exc:
            results.append(exc)
    return results
