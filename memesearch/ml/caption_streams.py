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

import os
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import TypeVar

#: Quantised weight types: their activation scales (per tensor, or kernels that differ with
#: the batch's row count) make a batched row differ from the same row run alone, unless the
#: backend knows its graph computes rows alone (``Captioner.batches_exactly``).
BATCH_INEXACT_DTYPES = frozenset({"int8", "uint8", "quantized", "q8", "q4", "q4f16", "bnb4"})


def batches_exactly(dtype: str) -> bool:
    """Whether ``dtype``'s weights, as such, give a batched row the result it gets alone
    (memesearch.ml.caption_batches explains why quantised ones do not)."""
    return dtype not in BATCH_INEXACT_DTYPES


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


def auto_streams(requested: int, cores: int | None = None) -> int:
    """Streams for a caption model: ``requested`` when > 0, else 2 on 2 or more cores.

    Two, not one per core: each stream holds its own activations (~0.1-0.2 GB for SmolVLM-256M
    at one 512-px tile), and two already keep both cores of the measured 2-core machine busy
    (docs/BENCHMARKS.md, "bulk describe levers"); more cores split between the two streams."""
    if requested > 0:
        return requested
    return 2 if (cores or os.cpu_count() or 1) >= 2 else 1


def threads_per_stream(threads: int | None, streams: int, cores: int | None = None) -> int | None:
    """Intra-op threads for sessions that ``streams`` runs share: the cores divided between the
    streams (at least 1), so that streams do not oversubscribe the cores (2 streams of 2 threads
    on 2 cores ran at about the speed of one stream). ``None`` keeps onnxruntime's default."""
    if streams <= 1:
        return threads
    return max(1, (threads or cores or os.cpu_count() or 1) // streams)
