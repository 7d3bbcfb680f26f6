"""Bulk describe: memes per minute when several memes are decoded together, side by side.

Usage:
  .venv/bin/python bench/vlm_models.py smolvlm-256m                 # build + export once
  .venv/bin/python bench/bench_describe_batch.py [--model smolvlm-256m] [--dtype int8] \
      [--batches 1 4 8] [--memes 8] [--tokens 32] [--threads 2]

Runs our ONNX SmolVLM captioner (the backend `describe all` / `index --describe` use, at the
models.yml setting of one 512-px tile) over --memes different memes with every batch size in
its own subprocess (so peak RSS is that setting's alone), forcing exactly --tokens decoded
tokens per meme (EOS ignored). Reports memes per minute, the ratio to batch 1, peak RSS, and
whether every batch size produced exactly the token ids of batch 1.
"""

from __future__ import annotations

import argparse
import os
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from worker_process import main_or_worker, print_header, run_worker  # noqa: E402


def memes(count: int):
    """Different memes: the benchmark meme, mirrored / rotated / recoloured per index."""
    from PIL import ImageOps

    from vlm_worker import meme_image

    base = meme_image(640, 480)
    variants = [base, ImageOps.mirror(base), ImageOps.flip(base), ImageOps.invert(base), ImageOps.grayscale(base).convert("RGB"),
                base.rotate(90, expand=True), ImageOps.posterize(base, 3), ImageOps.solarize(base, 128)]
    return [variants[i % len(variants)] if i < len(variants) else variants[i % len(variants)].rotate(7 * i)
            for i in range(count)]


def forced_captioner(spec: dict):
    """Our loaded ONNX SmolVLM (one 512-px tile, ``spec["batch"]`` memes per call) that always
    decodes ``spec["tokens"]`` tokens, and ``spec["memes"]`` requests for different memes."""
    sys.path.insert(0, str(HERE.parent))
    from memesearch.ml.base import CaptionRequest
    from memesearch.ml.families.smolvlm.onnx_backend import OnnxSmolVLMCaptioner

    captioner = OnnxSmolVLMCaptioner(Path(spec["models"]), dtype=spec["dtype"], threads=spec["threads"],
                                     image_longest_edge=512)
    captioner.ensure_loaded()
    captioner.config = replace(captioner.config, eos_token_ids=())  # always decode `tokens` tokens
    captioner.batch_size = spec["batch"]
    captioner.exact_batches_only = False  # measure batching quantised weights too (ids compared below)
    requests = [CaptionRequest(image=image, prompt=spec["prompt"], max_new_tokens=spec["tokens"])
                for image in memes(spec["memes"])]
    return captioner, requests


def worker(spec: dict) -> dict:
    captioner, requests = forced_captioner(spec)
    return measure(captioner, requests, spec["batch"])


def measure(captioner, requests, warm_up: int, after_warm_up=lambda: None) -> dict:
    """Caption the first ``warm_up`` requests (not timed), then all of them: speed, ids, peak RSS, load."""
    captioner.caption(requests[:warm_up])
    after_warm_up()
    started = time.perf_counter()
    results = captioner.caption(requests)
    seconds = time.perf_counter() - started
    return {"seconds": seconds, "memes_per_min": len(requests) / seconds * 60,
            "ids": [r.token_ids for r in results],
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "load1": os.getloadavg()[0]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smolvlm-256m")
    parser.add_argument("--models-dir", type=Path, default=HERE / "out" / "models")
    parser.add_argument("--dtype", default="int8")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--memes", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    from bench_vlm import PROMPTS

    print_header("bulk describe benchmark")
    rows, reference = [], None
    for batch in args.batches:
        spec = {"models": str((args.models_dir / args.model / "onnx").resolve()), "dtype": args.dtype,
                "threads": args.threads, "batch": batch, "memes": args.memes, "tokens": args.tokens,
                "prompt": PROMPTS["smolvlm"]}
        load_before = os.getloadavg()[0]
        result = run_worker(Path(__file__), spec, args.threads)
        if isinstance(result, str):
            print(f"batch {batch}: {result}", flush=True)
            continue
        reference = reference or result
        same = result["ids"] == reference["ids"]
        rows.append((batch, result, same, load_before))
        print(f"batch {batch}: {result['memes_per_min']:.2f} memes/min, same ids as batch {args.batches[0]}: {same}, "
              f"peak RSS {result['peak_rss_mb']} MB", flush=True)
    print(f"\n| model | dtype | batch | memes/min | vs batch {args.batches[0]} | same token ids | peak RSS MB | load1 before/after |")
    print("|---|---|---|---|---|---|---|---|")
    for batch, result, same, load_before in rows:
        ratio = result["memes_per_min"] / reference["memes_per_min"]
        print(f"| {args.model} | {args.dtype} | {batch} | {result['memes_per_min']:.2f} | {ratio:.2f}x | {'yes' if same else 'NO'} | "
              f"{result['peak_rss_mb']} | {load_before:.2f}/{result['load1']:.2f} |")


if __name__ == "__main__":
    main_or_worker(worker, main)
