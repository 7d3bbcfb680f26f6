"""A search's model time: the MiniLM query embedding, then CLIP's text tower (visual search on),
with onnxruntime's idle threads stopping at the end of each run (the app's default), spinning
on after it (onnxruntime's default, the app's before session 16), or never spinning.

Usage:
  .venv/bin/python bench/bench_query_models.py --minilm-cache DIR --clip-dir DIR
      [--clip-dtype int8] [--queries 30] [--repeats 3] [--pause-ms 50]

--minilm-cache: a models folder holding ``all-minilm-l6-v2`` (the app's ``<data dir>/models``);
--clip-dir: an exported CLIP folder (``textual/``, ``config.json``: bench/bench_clip.py writes a
full-size random-weight one under its --work, in ``onnx/``).

Each spin mode runs in its own process (MEMESEARCH_SPIN), the modes alternated --repeats times.
A process loads both models as a search process does (2 intra-op threads each on 2 cores), warms
them up, then embeds --queries different queries one after the other, each with MiniLM and then
with CLIP's text tower, pausing --pause-ms between queries (searches arrive apart). Prints the
median milliseconds per query of each run and the median over runs.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))
from worker_process import main_or_worker, print_header, run_worker  # noqa: E402

MODES = ("always", "run", "never")
WORDS = ("cat", "dog", "office", "monday", "coffee", "drake", "cringe", "programmer", "bug", "deploy",
         "friday", "exam", "sleep", "pizza", "boss", "meeting", "wifi", "update", "gym", "diet")


def queries(count: int) -> list[str]:
    """Different short queries, as people type them (no embedding is reused)."""
    return [f"{WORDS[i % len(WORDS)]} {WORDS[(i * 7 + 3) % len(WORDS)]} meme {i}" for i in range(count)]


def worker(spec: dict) -> dict:
    from memesearch.ml.families.clip.onnx_backend import ClipOnnxEmbedder
    from memesearch.ml.minilm import MiniLmEmbedder

    minilm = MiniLmEmbedder(cache_dir=Path(spec["minilm_cache"]))
    clip = ClipOnnxEmbedder(Path(spec["clip_dir"]), dtype=spec["clip_dtype"])
    for text in ("warm up", "another warm up"):
        minilm.embed_query(text)
        clip.embed_texts([text])
    times = []
    for text in queries(spec["queries"]):
        started = time.perf_counter()
        minilm.embed_query(text)
        clip.embed_texts([text])
        times.append(1000 * (time.perf_counter() - started))
        time.sleep(spec["pause_ms"] / 1000)
    return {"median_ms": statistics.median(times), "p90_ms": sorted(times)[int(0.9 * len(times))], "load1": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--minilm-cache", type=Path, required=True)
    parser.add_argument("--clip-dir", type=Path, required=True)
    parser.add_argument("--clip-dtype", default="int8")
    parser.add_argument("--queries", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--pause-ms", type=float, default=50)
    args = parser.parse_args()
    print_header("query models (MiniLM + CLIP text tower) by spin mode")
    spec = {"minilm_cache": str(args.minilm_cache.resolve()), "clip_dir": str(args.clip_dir.resolve()),
            "clip_dtype": args.clip_dtype, "queries": args.queries, "pause_ms": args.pause_ms}
    runs: dict[str, list[dict]] = {}
    for _ in range(args.repeats):
        for mode in MODES:
            result = run_worker(Path(__file__), spec, 2, {"MEMESEARCH_SPIN": mode})
            if isinstance(result, str):
                print(f"{mode}: {result}", flush=True)
                continue
            runs.setdefault(mode, []).append(result)
            print(f"{mode}: {result['median_ms']:.1f} ms per query (p90 {result['p90_ms']:.1f}), "
                  f"load {result['load1']:.2f}", flush=True)
    print(f"\n| MEMESEARCH_SPIN | ms per query (median of runs) | each run | p90 (median of runs) | vs always |")
    print("|---|---|---|---|---|")
    base = statistics.median(r["median_ms"] for r in runs.get("always", [{"median_ms": float("nan")}]))
    for mode, results in runs.items():
        median = statistics.median(r["median_ms"] for r in results)
        print(f"| {mode} | {median:.1f} | {' '.join('%.1f' % r['median_ms'] for r in results)} | "
              f"{statistics.median(r['p90_ms'] for r in results):.1f} | {base / median:.2f}x |")


if __name__ == "__main__":
    main_or_worker(worker, main)
