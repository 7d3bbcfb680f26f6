"""ML service overhead: the same OCR and embedding calls in-process and through the service.

Usage:  .venv/bin/python bench/bench_service.py [--images 6] [--repeats 3]

Starts `memesearch ml serve` on a free 127.0.0.1 port (models dir shared with a
temp data dir), warms both sides up, then prints ms per call (median) for each
path and the difference, which is the HTTP + encoding overhead.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from memesearch.library.decode import load_rgb  # noqa: E402
from memesearch.library.samples import render_sample_memes  # noqa: E402
from memesearch.ml.factory import text_embedder  # noqa: E402
from memesearch.ml.ocr import RapidOcrEngine  # noqa: E402
from memesearch.ml.remote import RemoteEmbedder, RemoteOcrEngine, ServiceClient  # noqa: E402
from tests.service.helpers import free_port, link_models, start_service, stop  # noqa: E402

TEXT = "one does not simply walk into mordor without checking the build logs first"


def per_call_ms(func, items, repeats: int) -> float:
    for item in items[:2]:
        func(item)  # warm-up
    times = []
    for _ in range(repeats):
        for item in items:
            started = time.perf_counter()
            func(item)
            times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--images", type=int, default=6)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="bench_service_"))
    models = work / "models"
    render_sample_memes(work / "memes", count=args.images, seed=2)
    images = [load_rgb(p, 64) for p in sorted((work / "memes").rglob("*")) if p.is_file()]
    local_embedder = text_embedder("all-minilm-l6-v2", models / "all-minilm-l6-v2", threads=1)
    local_embedder.ensure_loaded()
    local_ocr = RapidOcrEngine(threads=1)
    home = work / "service"
    link_models(home, models)
    port = free_port()
    proc = start_service(home, port, work / "service.log")
    try:
        client = ServiceClient([f"http://127.0.0.1:{port}"])
        remote_embedder, remote_ocr = RemoteEmbedder(client, "all-minilm-l6-v2"), RemoteOcrEngine(client)
        batch = [TEXT] * 32
        rows = [
            ("embed 1 text", per_call_ms(lambda t: local_embedder.embed([t]), [TEXT] * 20, args.repeats),
             per_call_ms(lambda t: remote_embedder.embed([t]), [TEXT] * 20, args.repeats)),
            ("embed 32 texts", per_call_ms(lambda b: local_embedder.embed(b), [batch] * 5, args.repeats),
             per_call_ms(lambda b: remote_embedder.embed(b), [batch] * 5, args.repeats)),
            ("OCR 1 meme", per_call_ms(local_ocr.read, images, args.repeats),
             per_call_ms(remote_ocr.read, images, args.repeats)),
        ]
    finally:
        stop(proc)
    print(f"{'call':<16}{'in-process ms':>15}{'service ms':>12}{'overhead ms':>13}")
    for name, local, remote in rows:
        print(f"{name:<16}{local:>15.2f}{remote:>12.2f}{remote - local:>13.2f}")


if __name__ == "__main__":
    main()
