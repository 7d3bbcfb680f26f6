"""Bulk describe through the background jobs (`jobs start describe`, the web's "describe all"):
memes per minute when a worker claims and captions one meme per model call vs a batch.

Usage:
  .venv/bin/python bench/vlm_models.py smolvlm-256m --out /tmp/vlmspeed-cache      # build + export once
  .venv/bin/python bench/bench_describe_jobs.py --models-dir /tmp/vlmspeed-cache [--dtype fp32] \
      [--batches 1 4] [--streams 1 2] [--memes 4] [--tokens 32] [--threads 2] [--repeats 3] [--direct]

Each batch size runs in its own process: a fresh data dir whose models folder links the ONNX
SmolVLM export (full-size random weights from bench/vlm_models.py; `models.yml` overrides only
the dtype and the length), --memes memes written as PNG files and scanned, one in-process
worker thread (real Huey SQLite queue, SQLite store, claims, leases), --tokens forced tokens per
meme (EOS ignored). The captioner is loaded and warmed up (one batch) before the clock starts;
the clock runs from `jobs.start` to the run's end, so claims, leases, image decoding, writes and
the embed stage (the fake embedder: text embedding is not what is measured) are included.
--direct also runs bench_describe_batch.py's captioner-only rows in the same command.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from worker_process import main_or_worker, print_header, run_worker  # noqa: E402


def prepare(spec: dict, root: Path):
    """A data dir using the exported model, and a folder of --memes different memes (+1 for the warm-up)."""
    from bench_describe_batch import memes

    images = memes(spec["memes"] + spec["batch"])
    folder = root / "memes"
    folder.mkdir()
    for index, image in enumerate(images[: spec["memes"]]):
        image.save(folder / f"meme{index:03d}.png")
    home = root / "data"
    (home / "models").mkdir(parents=True)
    (home / "models" / spec["model"]).symlink_to(Path(spec["models"]), target_is_directory=True)
    (home / "models.yml").write_text(
        f"models:\n  {spec['model']}:\n    generation: {{max_new_tokens: {spec['tokens']}, image_longest_edge: 512}}\n"
        f"    sources: {{onnx: {{default_dtype: {spec['dtype']}}}}}\n", encoding="utf-8")
    return folder, home, images[spec["memes"]:]


def worker(spec: dict) -> dict:
    sys.path.insert(0, str(HERE.parent))
    from memesearch.app import Core
    from memesearch.config import Settings
    from memesearch.jobs.worker import start_in_process
    from memesearch.library.scanner import scan_folder
    from memesearch.ml.caption_batches import batch_size_of
    from memesearch.ml.fake import FakeEmbedder

    folder, home, warm_up = prepare(spec, Path(tempfile.mkdtemp(prefix="bench_describe_jobs_")))
    core = Core(Settings(home=home, ocr_enabled=False, threads=spec["threads"], job_lease_s=600,
                         caption_streams=spec.get("streams", 1)))
    core.__dict__["embedder"] = FakeEmbedder()
    scan_folder(core.store, core.store.add_folder(str(folder)), core.settings)
    chain = core.captioner(spec["model"])
    onnx = chain._opened["onnx"].captioner
    onnx.config = replace(onnx.config, eos_token_ids=())  # always decode `tokens` tokens
    onnx.batch_size = chain.batch_size = spec["batch"]
    chain.caption_images(warm_up)
    calls: list[int] = []  # images per model call, as the run makes them
    run_batch = onnx._caption_batch
    onnx._caption_batch = lambda requests: calls.append(len(requests)) or run_batch(requests)
    handle = start_in_process(core, 1)
    started = time.perf_counter()
    run = core.jobs.start("describe", model=spec["model"])
    while core.jobs.get(run.id).active:
        time.sleep(0.05)
    seconds = time.perf_counter() - started
    handle.stop()
    final = core.jobs.get(run.id)
    memes = core.store.get_memes(core.store.meme_ids())
    result = {"seconds": seconds, "memes_per_min": final.done / seconds * 60, "done": final.done, "total": final.total,
              "claimed": batch_size_of(chain), "calls": calls, "dtype": chain.dtype, "model_s": core.jobs.processor.model_s,
              "texts": {Path(m.path).name: m.descriptions[0].text for m in memes if m.descriptions},
              "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
              "load1": os.getloadavg()[0]}
    core.close()
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smolvlm-256m")
    parser.add_argument("--models-dir", type=Path, default=HERE / "out" / "models")
    parser.add_argument("--dtype", default="fp32")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4])
    parser.add_argument("--streams", type=int, nargs="+", default=[1],
                        help="caption streams (settings.caption_streams) of the jobs rows; each with every batch size")
    parser.add_argument("--memes", type=int, default=4)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each setting, interleaved; the median counts")
    parser.add_argument("--direct", action="store_true", help="also the captioner-only rows (bench_describe_batch.py)")
    args = parser.parse_args()
    from bench_vlm import PROMPTS

    print_header("bulk describe through the jobs")
    onnx_dir = str((args.models_dir / args.model / "onnx").resolve())
    rows: dict[tuple[str, int, int], list] = {}
    # Repeats interleave the settings (1, 4, 1, 4, ...) so a load change hits all of them alike.
    for _ in range(args.repeats):
        for batch, streams in [(b, s) for s in args.streams for b in args.batches]:
            paths = [("jobs", Path(__file__), {"models": onnx_dir, "model": args.model, "dtype": args.dtype,
                                              "batch": batch, "memes": args.memes, "tokens": args.tokens,
                                              "threads": args.threads, "streams": streams})]
            if args.direct and streams == args.streams[0]:
                paths.append(("captioner", HERE / "bench_describe_batch.py",
                              {"models": onnx_dir, "dtype": args.dtype, "threads": args.threads, "batch": batch,
                               "memes": args.memes, "tokens": args.tokens, "prompt": PROMPTS["smolvlm"]}))
            for path, script, spec in paths:
                load_before = os.getloadavg()[0]
                result = run_worker(script, spec, args.threads)
                if isinstance(result, str):
                    print(f"{path} batch {batch}: {result}", flush=True)
                    continue
                result["load_before"] = load_before
                rows.setdefault((path, batch, spec.get("streams", 1)), []).append(result)
                print(f"{path} batch {batch} streams {spec.get('streams', 1)}: {result['memes_per_min']:.2f} memes/min, peak RSS {result['peak_rss_mb']} MB, "
                      f"load {load_before:.2f}/{result['load1']:.2f}", flush=True)
    print(f"\n| path | dtype | batch | streams | memes per model call (jobs: as made) | memes/min (median of {args.repeats}) | "
          f"vs batch {args.batches[0]} streams {args.streams[0]} | each run | same output | peak RSS MB | load1 range |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for (path, batch, streams), results in rows.items():
        reference = rows.get((path, args.batches[0], args.streams[0]))
        if not reference:
            continue
        key = "texts" if path == "jobs" else "ids"
        same = all(r[key] == reference[0][key] for r in results)
        speeds = [r["memes_per_min"] for r in results]
        loads = [value for r in results for value in (r["load_before"], r["load1"])]
        per_call = "/".join(map(str, results[0]["calls"])) if "calls" in results[0] else batch
        ratio = statistics.median(speeds) / statistics.median(r["memes_per_min"] for r in reference)
        print(f"| {path} | {args.dtype} | {batch} | {streams} | {per_call} | {statistics.median(speeds):.2f} | {ratio:.2f}x | "
              f"{' '.join(f'{v:.1f}' for v in speeds)} | {'yes' if same else 'NO'} | "
              f"{max(r['peak_rss_mb'] for r in results)} | {min(loads):.1f}-{max(loads):.1f} |")



if __name__ == "__main__":
    main_or_worker(worker, main)
