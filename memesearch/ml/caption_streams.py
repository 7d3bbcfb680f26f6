"""Caption streams: several caption batches running at once through ONE loaded model.

Why: a decode step is many small MatMuls that barely speed up with a second intra-op thread,
so on a few cores one ``session.run`` per core (each with fewer intra-op threads) gets more
memes through than one run spread over all cores; and one stream's vision encoder overlaps
another's decode. onnxruntime's ``InferenceSession.run`` is thread-safe and releases the GIL,
so the streams share the sessions: the weights are held once, each stream adds only its
activations. Streams never change a caption: each batch runs exactly as it would alone
(tests/models/test_caption_streams.py), which also lets int8 models, whose batches are not
exact, run one meme per stream.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

Batch = TypeVar("Batch")
Result = TypeVar("Result")


def run_streams(batches: Sequence[Batch], run: Callable[[Batch], Result], streams: int) -> list[Result]:
    """``[run(b) for b in batches]``, with up to ``streams`` batches in flight at once.

    Results keep the batches' order. If a batch raises, the others still finish (their work
    is not thrown away mid-run) and the first batch's error, in batch order, is raised."""
    if streams <= 1 or len(batches) <= 1:
        return [run(batch) for batch in batches]
    with ThreadPoolExecutor(max_workers=min(streams, len(batches)), thread_name_prefix="caption-stream") as pool:
        futures = [pool.submit(run, batch) for batch in batches]
        return [future.result() for future in futures]
