"""Vector scan: memesearch.nearest's int8 scan + exact re-rank against the exact float32 scan,
side by side in one run, with recall against exact.

    .venv/bin/python bench/bench_vectors.py [--sizes 100000 1000000] [--queries 200]

Data: real MiniLM embeddings of ~2,700 sentences of Python's reference manual (recall on
real vectors, 200 held out as queries), and vectors of the generator calibrated against
them (bench/calibrated_vectors.py: 300 clusters with local structure, the real set's
covariance, LID and neighbour cosines) for the large sizes, queried with held-out samples.

For each size both indexes answer the same queries, alternating, so load on the shared
machine hits both alike. Reported: median ms per query (wall and CPU), the ratio, and
recall@10 of the top 10 (k=10) and of the top 10 inside the engine's 200-deep candidate
list (k=200), both against the exact scan's top 10.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from calibrated_vectors import CalibratedGenerator, describe, reference_embeddings  # noqa: E402
from machine import machine_line  # noqa: E402

from memesearch.nearest import NearestIndex  # noqa: E402
from memesearch.search.engine import single_threaded_blas  # noqa: E402

NEVER = 10**12  # quantize_from for an index that always scans exactly


def rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def cached_reference() -> np.ndarray:
    cache = Path(tempfile.gettempdir()) / "memesearch-bench-reference-minilm.npy"
    if cache.exists():
        return np.load(cache)
    vectors = reference_embeddings()
    np.save(cache, vectors)
    return vectors


def compare(label: str, ids: np.ndarray, vectors: np.ndarray, queries: np.ndarray, quantize_from: int) -> None:
    exact = NearestIndex(vectors.shape[1], ids, vectors, quantize_from=NEVER)
    before, started = rss_mb(), time.perf_counter()
    quick = NearestIndex(vectors.shape[1], ids, vectors, quantize_from=quantize_from)
    build_s, extra_mb = time.perf_counter() - started, rss_mb() - before
    for k in (10, 200):
        wall = {"exact": [], "int8": []}
        cpu = {"exact": [], "int8": []}
        recalls = []
        for query in queries:
            results = {}
            for name, index in (("exact", exact), ("int8", quick)):
                w, c = time.perf_counter(), time.process_time()
                results[name] = index.search(query, k)
                wall[name].append((time.perf_counter() - w) * 1000)
                cpu[name].append((time.process_time() - c) * 1000)
            truth = {i for i, _ in results["exact"][:10]}
            recalls.append(len(truth & {i for i, _ in results["int8"][:10]}) / len(truth))
        e, q = statistics.median(wall["exact"]), statistics.median(wall["int8"])
        ec, qc = statistics.median(cpu["exact"]), statistics.median(cpu["int8"])
        print(f"{label:<26} {len(ids):>9,} {k:>4} {e:>9.2f} {q:>9.2f} {q / e:>6.2f} {ec:>8.2f} {qc:>8.2f} "
              f"{qc / ec:>6.2f} {np.mean(recalls):>8.4f} {min(recalls):>6.2f}", flush=True)
    print(f"{'':<26} int8 index built in {build_s:.2f} s, +{extra_mb:.0f} MB resident "
          f"(float32 rows: {vectors.nbytes / 2**20:.0f} MB)", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000])
    parser.add_argument("--queries", type=int, default=200)
    args = parser.parse_args()
    single_threaded_blas()  # as the search engine runs
    print(machine_line())
    reference = cached_reference()
    print(describe("real MiniLM embeddings", reference))
    generator = CalibratedGenerator(reference)
    print(f"{'data':<26} {'rows':>9} {'k':>4} {'exact ms':>9} {'int8 ms':>9} {'ratio':>6} {'exact cpu':>8} "
          f"{'int8 cpu':>8} {'ratio':>6} {'recall10':>8} {'worst':>6}")
    held_out = len(reference) - args.queries
    compare("real MiniLM (int8 forced)", np.arange(held_out), reference[:held_out], reference[held_out:], 0)
    for size in args.sizes:
        vectors = generator.sample(size, seed=size)
        if size == args.sizes[0]:
            print(describe("calibrated generator", vectors[: len(reference)]))
        queries = generator.sample(args.queries, seed=7)
        compare("calibrated", np.arange(size, dtype=np.int64) * 3 + 1, vectors, queries, 0)
        del vectors
    print(f"peak RSS {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB")


if __name__ == "__main__":
    main()
