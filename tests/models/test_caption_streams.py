"""Caption streams: several batches at once through one loaded model give every meme exactly
the tokens it gets alone, for fp32 and int8 (batched streams; int8 one meme per stream where the
CPU's kernel would mix the decoder's rows), with the
sessions' cores split between the streams; one bad image in a streamed chunk fails alone.

The tiny random SmolVLM (real classes and chat template) is exported with our exporter and run
through our ONNX loop, as in test_caption_batches.py.
"""

from __future__ import annotations

import threading

import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from memesearch.errors import InvalidInputError  # noqa: E402
from memesearch.ml.caption_batches import batch_size_of, caption_each  # noqa: E402
from memesearch.ml.caption_streams import run_streams  # noqa: E402
from memesearch.ml.families.smolvlm.export import export  # noqa: E402
from memesearch.ml.families.smolvlm.onnx_backend import OnnxSmolVLMCaptioner  # noqa: E402
from memesearch.ml.families.smolvlm.tiny import build_tiny_checkpoint  # noqa: E402
from tests.models.test_caption_batches import MEMES, requests_for  # noqa: E402

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory):
    checkpoint = build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), seed=0)
    return export(checkpoint, tmp_path_factory.mktemp("onnx"), int8=True, int8_decoder="per_row")


def alone_ids(onnx_dir, dtype: str) -> list[list[int]]:
    """Each meme captioned on its own, by a one-stream captioner with 2 intra-op threads."""
    captioner = OnnxSmolVLMCaptioner(onnx_dir, dtype=dtype, threads=2)
    return [captioner.caption(requests_for([image]))[0].token_ids for image in MEMES]


class RecordingCaptioner(OnnxSmolVLMCaptioner):
    """The real captioner, recording which memes each model call got and how many ran at once."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.calls: list[int] = []
        self.running = self.most_at_once = 0
        self._count = threading.Lock()

    def _caption_batch(self, requests):
        with self._count:
            self.calls.append(len(requests))
            self.running += 1
            self.most_at_once = max(self.most_at_once, self.running)
        try:
            return super()._caption_batch(requests)
        finally:
            with self._count:
                self.running -= 1


@pytest.mark.parametrize("dtype", ["fp32", "int8"])
def test_streamed_ids_equal_one_at_a_time(onnx_dir, dtype):
    captioner = RecordingCaptioner(onnx_dir, dtype=dtype, threads=2, streams=2)
    captioner.ensure_loaded()
    captioner.batch_size = 3  # 6 memes: two batches, one per stream
    # int8 batches only where this CPU keeps the decoder's rows apart (test_caption_batches.py),
    # else one meme per stream.
    per_stream = 3 if captioner.batches_exactly else 1
    assert dtype == "int8" or captioner.batches_exactly
    assert (captioner.call_batch, batch_size_of(captioner)) == (per_stream, 2 * per_stream)
    assert captioner.vision.get_session_options().intra_op_num_threads == 1  # 2 threads split over 2 streams
    streamed = [result.token_ids for result in captioner.caption(requests_for(MEMES))]
    assert streamed == alone_ids(onnx_dir, dtype)
    assert len({tuple(ids) for ids in streamed}) > 1  # different memes, different captions: the test can fail
    assert sum(captioner.calls) == len(MEMES) and max(captioner.calls) == per_stream
    assert captioner.most_at_once == 2


class PoisonedStreams(RecordingCaptioner):
    """Rejects one image at the model boundary, as a backend does with an image it cannot read."""

    poisoned = None

    def _caption_batch(self, requests):
        if any(request.image is self.poisoned for request in requests):
            raise InvalidInputError("the model cannot read this image")
        return super()._caption_batch(requests)

    def caption_images(self, images):
        return self.caption(requests_for(images))


def test_one_bad_image_in_a_streamed_chunk_fails_alone(onnx_dir):
    captioner = PoisonedStreams(onnx_dir, dtype="int8", threads=2, streams=2)
    captioner.ensure_loaded()
    images = MEMES[:4]
    captioner.poisoned = images[1]
    results = caption_each(captioner, images)
    assert isinstance(results[1], InvalidInputError)
    expected = alone_ids(onnx_dir, "int8")
    for index in (0, 2, 3):
        assert results[index].token_ids == expected[index]


def test_streams_run_batches_at_once_and_keep_their_order():
    both_running = threading.Barrier(2, timeout=30)  # breaks (and fails the test) unless two run at once

    def run(batch):
        if batch[0] < 2:
            both_running.wait()
        return [value * 10 for value in batch]

    assert run_streams([[0], [1], [2, 3], [4]], run, streams=2) == [[0], [10], [20, 30], [40]]


def test_a_failing_batch_raises_after_the_others_finish():
    finished = []

    def run(batch):
        if batch == "bad":
            raise InvalidInputError("no")
        finished.append(batch)
        return batch

    with pytest.raises(InvalidInputError):
        run_streams(["a", "bad", "b", "c"], run, streams=2)
    assert sorted(finished) == ["a", "b", "c"]


def test_two_streams_by_default_on_two_or_more_cores_with_the_cores_split():
    from memesearch.ml.caption_streams import auto_streams, threads_per_stream

    assert [auto_streams(0, cores=n) for n in (1, 2, 16)] == [1, 2, 2]
    assert auto_streams(3, cores=2) == 3  # the setting wins
    assert threads_per_stream(None, 2, cores=2) == 1
    assert threads_per_stream(8, 2) == 4
    assert threads_per_stream(1, 2) == 1
    assert threads_per_stream(None, 1) is None  # one stream: onnxruntime's own default
