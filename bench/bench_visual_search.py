"""What visual search adds to a text search: the image side's ranking over N memes (no model time).

Usage:
  .venv/bin/python bench/bench_visual_search.py [--memes 20000] [--queries 50]

A real SQLite store with N memes and one random 512-d unit image vector each (ViT-B/32's
width) in the space ``image:clip-vit-b-32``. Times, on one BLAS thread as the server runs it:
the first load of the image matrix into memory, then per query the exact cosine ranking with
the relevance floor (``VisualRanker.rank`` with the text tower replaced by a fixed unit vector:
the text tower's own cost, about 120 ms once per distinct query, is in bench_clip.py), and the
matrix's memory. Prints the machine (bench/machine.py) and a Markdown row.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.machine import machine_line  # noqa: E402
from memesearch.search.engine import VectorIndex, single_threaded_blas  # noqa: E402
from memesearch.search.visual import VisualRanker  # noqa: E402
from memesearch.store.models import FileRecord  # noqa: E402
from memesearch.store.sqlite import SqliteStore  # noqa: E402
from memesearch.visual.model import STAGE, space_of  # noqa: E402

DIM = 512


class FixedQuery:
    """The model boundary: a visual model whose text tower returns fixed unit vectors."""

    relevance_floor = 0.22

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def embed_texts(self, texts):
        vectors = self.rng.normal(size=(len(texts), DIM)).astype(np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--memes", type=int, default=20000)
    parser.add_argument("--queries", type=int, default=50)
    args = parser.parse_args()
    print(machine_line())
    single_threaded_blas()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as work:
        store = SqliteStore(Path(work) / "bench.db")
        space = space_of("clip-vit-b-32")
        for start in range(0, args.memes, 1000):
            ids = [store.insert_file(FileRecord(path=f"/m/{i}.png", folder_id=None, size=1, mtime=1.0,
                                                sha256=f"s{i}", format="png"))
                   for i in range(start, min(start + 1000, args.memes))]
            vectors = rng.normal(size=(len(ids), DIM)).astype(np.float32)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
            store.put_vectors(space, [(i, f"s{i}", v) for i, v in zip(ids, vectors)], stage=STAGE)
        ranker = VisualRanker(store, FixedQuery(rng), VectorIndex(store, space))
        started = time.perf_counter()
        ranker.rank("warm-up", 200, None)
        load_ms = (time.perf_counter() - started) * 1000
        times = []
        for n in range(args.queries):
            started = time.perf_counter()
            ranker.rank(f"query {n}", 200, None)
            times.append((time.perf_counter() - started) * 1000)
        matrix_mb = args.memes * DIM * 4 / 1e6
        print("| memes | first load (ms) | image ranking per query, median ms (p90) | image matrix in memory |")
        print("|---|---|---|---|")
        p90 = sorted(times)[int(len(times) * 0.9) - 1]
        print(f"| {args.memes:,} | {load_ms:.0f} | {statistics.median(times):.1f} ({p90:.1f}) | {matrix_mb:.0f} MB |")
        store.close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
