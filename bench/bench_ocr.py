"""OCR speed and accuracy: rapidocr (bundled PP-OCRv6 small) on rendered sample memes.

Usage:  .venv/bin/python bench/bench_ocr.py [--memes 20] [--threads 1 2] [--seed 0] [--models-dir DIR]

Per thread count: median wall ms/meme and median CPU ms/meme (CPU time is the
steadier number on a shared machine), and mean word recall against the rendered
captions. Each meme is read once for warm-up, then timed.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import os
import platform
import re
import statistics
import tempfile
import time
from pathlib import Path

from memesearch.library.decode import load_rgb
from memesearch.library.sample_captions import SPACELESS_CAPTION
from memesearch.library.samples import render_sample_memes
from memesearch.ml.ocr import RapidOcrEngine


def word_recall(expected: str, read: str) -> float:
    wanted = set(re.findall(r"\w+", expected.casefold()))
    found = set(re.findall(r"\w+", read.casefold()))
    return len(wanted & found) / len(wanted)


def machine_facts() -> dict[str, str]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": str(os.cpu_count()),
        "load average": " ".join(f"{value:.2f}" for value in os.getloadavg()),
        "python": platform.python_version(),
        "rapidocr": importlib.metadata.version("rapidocr"),
        "onnxruntime": importlib.metadata.version("onnxruntime"),
        "pillow": importlib.metadata.version("pillow"),
    }


def bench(threads: int, images, texts, models_dir: Path | None = None) -> dict[str, float]:
    engine = RapidOcrEngine(threads=threads, models_dir=models_dir)
    started = time.perf_counter()
    engine.ensure_loaded()
    load_ms = (time.perf_counter() - started) * 1000
    for image in images:  # warm-up: allocator, thread pool, first-shape costs
        engine.read(image)
    wall, cpu, recalls = [], [], []
    for image, text in zip(images, texts):
        cpu_started = time.process_time()
        result = engine.read(image)
        cpu.append((time.process_time() - cpu_started) * 1000)
        wall.append(result.ms)
        recalls.append(word_recall(text, result.text))
    return {
        "load_ms": load_ms,
        "wall_ms": statistics.median(wall),
        "cpu_ms": statistics.median(cpu),
        "recall": statistics.mean(recalls),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memes", type=int, default=20)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--models-dir", type=Path, help="a memesearch models dir: text detection (and recognition, on VNNI CPUs) runs int8, derived there once")
    args = parser.parse_args()
    if args.models_dir:  # derive the int8 detector before anything is timed
        engine = RapidOcrEngine(threads=1, models_dir=args.models_dir)
        engine.ensure_loaded()
        print(f"   detection: {engine.detector_dtype}, recognition: {engine.recognizer_dtype}")

    for key, value in machine_facts().items():
        print(f"{key:>12}: {value}")
    with tempfile.TemporaryDirectory() as folder:
        memes = render_sample_memes(Path(folder), count=args.memes, seed=args.seed)
        images = [load_rgb(meme.path, max_megapixels=50) for meme in memes]
    # The spaceless meme is scored on its run of letters: that is what it shows.
    texts = [SPACELESS_CAPTION.replace(" ", "") if meme.text == SPACELESS_CAPTION else meme.text for meme in memes]
    sizes = sorted(image.size for image in images)
    print(f"       memes: {len(images)} rendered (seed {args.seed}), {sizes[0]} .. {sizes[-1]} px")
    print(f"\n{'threads':>8} {'load ms':>8} {'wall ms/meme':>13} {'cpu ms/meme':>12} {'word recall':>12}")
    for threads in args.threads:
        row = bench(threads, images, texts, args.models_dir)
        print(f"{threads:>8} {row['load_ms']:>8.0f} {row['wall_ms']:>13.0f} {row['cpu_ms']:>12.0f} {row['recall']:>12.3f}")


if __name__ == "__main__":
    main()
