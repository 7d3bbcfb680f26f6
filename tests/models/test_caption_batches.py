"""Bulk describe in batches: the same tokens as one meme at a time, and one bad image fails alone.

A tiny random SmolVLM (real classes and chat template) is exported with our exporter and run
through our ONNX loop: a batch mixes single-tile and multi-tile memes (so prompts differ in
length and rows are padded) and must give exactly the ids of one-at-a-time runs.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

pytest.importorskip("torch")
pytest.importorskip("transformers")

from memesearch.errors import InvalidInputError  # noqa: E402
from memesearch.ml.base import CaptionRequest  # noqa: E402
from memesearch.ml.caption_batches import batch_size_of, caption_each  # noqa: E402
from memesearch.ml.families.smolvlm.assets import onnx_path  # noqa: E402
from memesearch.ml.families.smolvlm.export import export  # noqa: E402
from memesearch.ml.families.smolvlm.onnx_backend import OnnxSmolVLMCaptioner  # noqa: E402
from memesearch.ml.families.smolvlm.tiny import TINY_PROMPT, build_tiny_checkpoint  # noqa: E402
from memesearch.ml.onnx_runtime.quantize import quantize_matmuls  # noqa: E402
from memesearch.ml.onnx_runtime.row_exact import matmul_nbits_rows_independent  # noqa: E402

pytestmark = pytest.mark.slow

MAX_NEW_TOKENS = 12


def noise_image(height: int, width: int, seed: int) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


# Tiny tiles are 32 px and the longest edge is resized to 64 px: 1, 3 and 5 tiles.
MEMES = [noise_image(20, 20, 1), noise_image(90, 40, 2), noise_image(50, 70, 3), noise_image(400, 300, 4),
         noise_image(24, 30, 5), noise_image(64, 64, 6)]


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory):
    checkpoint = build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), seed=0)
    # int8 as models.yml's smolvlm-256m asks: the per-row decoder, which batches exactly.
    return export(checkpoint, tmp_path_factory.mktemp("onnx"), int8=True, int8_decoder="per_row")


def requests_for(images):
    return [CaptionRequest(image=image, prompt=TINY_PROMPT, max_new_tokens=MAX_NEW_TOKENS) for image in images]


def test_batched_ids_equal_one_at_a_time(onnx_dir):
    captioner = OnnxSmolVLMCaptioner(onnx_dir, dtype="fp32", threads=1)
    captioner.batch_size = len(MEMES)
    batched = [result.token_ids for result in captioner.caption(requests_for(MEMES))]
    alone = [captioner.caption(requests_for([image]))[0].token_ids for image in MEMES]
    assert batched == alone
    assert len({tuple(ids) for ids in alone}) > 1  # different memes, different captions: the test can fail


def test_int8_batches_equal_one_at_a_time(onnx_dir):
    """Our int8 decoder quantises each row's activations alone (8-bit MatMulNBits, accuracy level
    4): on a CPU whose kernel keeps rows apart (the probe), memes batch, with the ids they get alone."""
    captioner = OnnxSmolVLMCaptioner(onnx_dir, dtype="int8", threads=1)
    captioner.batch_size = len(MEMES)
    alone = [captioner.caption(requests_for([image]))[0].token_ids for image in MEMES]
    assert captioner.batches_exactly == matmul_nbits_rows_independent(8, 32, 4)  # tests/test_row_exact.py
    # Where the probe finds the kernel mixing rows, int8 runs one meme per call: exact either way.
    assert captioner.call_batch == batch_size_of(captioner) == (len(MEMES) if captioner.batches_exactly else 1)
    assert [result.token_ids for result in captioner.caption(requests_for(MEMES))] == alone
    assert len({tuple(ids) for ids in alone}) > 1


def test_per_tensor_int8_decoder_captions_one_meme_per_call(onnx_dir, tmp_path):
    """A decoder with one activation scale per tensor (``int8_decoder: per_tensor``, the community
    int8 files) makes a row depend on its batch: such a decoder is not batched (this shows why,
    on the tiny model, then checks that it is not)."""
    per_tensor = tmp_path / "per-tensor"
    shutil.copytree(onnx_dir, per_tensor)
    quantize_matmuls(onnx_dir / onnx_path("decoder_model_merged", "fp32"),
                     per_tensor / onnx_path("decoder_model_merged", "int8"))
    captioner = OnnxSmolVLMCaptioner(per_tensor, dtype="int8", threads=1)
    captioner.batch_size = len(MEMES)
    alone = [captioner.caption(requests_for([image]))[0].token_ids for image in MEMES]
    assert not captioner.batches_exactly
    assert [result.token_ids for result in captioner.caption(requests_for(MEMES))] == alone
    assert captioner.call_batch == batch_size_of(captioner) == 1
    captioner.exact_batches_only = False  # what batching them would give
    batched = [result.token_ids for result in captioner.caption(requests_for(MEMES))]
    assert batched != alone


class PoisonedCaptioner:
    """The real ONNX captioner behind the ChainCaptioner interface; it rejects one image,
    as a backend does with an image it cannot handle (the fake is only that rejection)."""

    def __init__(self, captioner: OnnxSmolVLMCaptioner, poisoned: Image.Image) -> None:
        self.captioner, self.poisoned = captioner, poisoned
        self.batches: list[int] = []

    def caption_images(self, images):
        self.batches.append(len(images))
        if any(image is self.poisoned for image in images):
            raise InvalidInputError("the model cannot read this image")
        return self.captioner.caption(requests_for(images))


def test_one_bad_image_fails_alone(onnx_dir):
    captioner = OnnxSmolVLMCaptioner(onnx_dir, threads=1)
    captioner.batch_size = 4
    images = MEMES[:4]
    poisoned = PoisonedCaptioner(captioner, images[2])
    results = caption_each(poisoned, images)
    assert isinstance(results[2], InvalidInputError)
    expected = [captioner.caption(requests_for([image]))[0].token_ids for image in images]
    for index in (0, 1, 3):
        assert results[index].token_ids == expected[index]
    assert poisoned.batches == [4, 1, 1, 1, 1]  # the batch, then each image alone


def test_a_batch_of_one_reports_its_error():
    class Broken:
        def caption_images(self, images):
            raise InvalidInputError("no")

    (result,) = caption_each(Broken(), [noise_image(8, 8, 0)])
    assert isinstance(result, InvalidInputError)


def test_batch_size_is_the_loaded_backends(onnx_dir):
    captioner = OnnxSmolVLMCaptioner(onnx_dir, threads=1)
    assert batch_size_of(captioner) == 1  # not loaded: the first call loads it with one meme
    captioner.ensure_loaded()
    captioner.batch_size = 6
    assert batch_size_of(captioner) == 6
