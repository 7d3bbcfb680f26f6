"""Bulk-run throughput and per-meme pipeline overhead with the fake caption model.

Usage:  .venv/bin/python bench/bench_jobs.py [--memes 60] [--workers 1 2 4]

A describe run (caption + embed per meme) over rendered memes, processed by
in-process worker threads through the real Huey SQLite queue and SQLite store.
Models are the fake captioner and the fake embedder, so the time is almost all
pipeline: claim/lease, reads, image decode, writes. Overhead per meme excludes
the time inside the models and the image decoder (both measured around each call);
it includes the queue's polling latency at the start of the run.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from memesearch.app import Core  # noqa: E402
from memesearch.config import Settings  # noqa: E402
from memesearch.jobs.worker import start_in_process  # noqa: E402
from memesearch.library.samples import render_sample_memes  # noqa: E402
from memesearch.library.scanner import scan_folder  # noqa: E402
from memesearch.ml.fake import FakeEmbedder  # noqa: E402


def one_run(folder: Path, workers: int) -> tuple[float, float, float, int]:
    home = Path(tempfile.mkdtemp(prefix="bench_jobs_"))
    core = Core(Settings(home=home, ocr_enabled=False))
    core.__dict__["embedder"] = FakeEmbedder()
    scan_folder(core.store, core.store.add_folder(str(folder)), core.settings)
    core.captioner("fake")  # load before timing
    handle = start_in_process(core, workers)
    started = time.perf_counter()
    run = core.jobs.start("describe", model="fake")
    while core.jobs.get(run.id).active:
        time.sleep(0.01)
    wall = time.perf_counter() - started
    handle.stop()
    final = core.jobs.get(run.id)
    assert final.done == final.total, final
    model_s, decode_s = core.jobs.processor.model_s, core.jobs.processor.decode_s
    core.close()
    return wall, model_s, decode_s, final.total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--memes", type=int, default=60)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2, 4])
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="bench_memes_"))
    render_sample_memes(folder, count=args.memes, seed=4)
    print(f"{'workers':>7}{'memes':>7}{'wall s':>8}{'memes/s':>9}{'model ms':>10}{'decode ms':>11}{'overhead ms':>13}")
    for workers in args.workers:
        wall, model_s, decode_s, total = one_run(folder, workers)
        # Thread-time spent per meme outside the models and the image decoder: claim, lease,
        # reads, writes, queue. With N workers the threads' busy time is about wall * N.
        overhead_ms = (wall * workers - model_s - decode_s) / total * 1000
        print(f"{workers:>7}{total:>7}{wall:>8.2f}{total / wall:>9.1f}{model_s / total * 1000:>10.2f}"
              f"{decode_s / total * 1000:>11.2f}{overhead_ms:>13.2f}")

if __name__ == "__main__":
    main()
