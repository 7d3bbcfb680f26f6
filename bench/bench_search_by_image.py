"""Search by image: the cost of one query against a library of stored template features.

    .venv/bin/python bench/bench_search_by_image.py [--library 20000] [--queries 20]

Builds a real SQLite library like ``bench_templates.py cost`` (random features and
perceptual hashes: random descriptors never verify, like most of a real library), then
searches by real rendered memes that are not in it. OCR of the query is left out (the core
has none): its cost is the OCR figure above, paid once per query unless the file is
already in the library. Prints the first query (reads every colour layout) and the median
of the following ones (layouts kept between searches), wall and CPU.

    .venv/bin/python bench/bench_search_by_image.py --hashes 100000

measures the perceptual-hash scan alone on a library of that many hashes: the per-query
Python loop it replaced and the numpy scan, side by side in one run (medians), plus the
numpy scan's first query (reads the hashes from the store).
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_templates import build_library, machine  # noqa: E402
from memesearch.config import Settings  # noqa: E402
from memesearch.search.by_image import search_by_image  # noqa: E402
from memesearch.store.sqlite import SqliteStore  # noqa: E402
from memesearch.templates.synthetic import render_template_set  # noqa: E402


def hash_scan(size: int, repeats: int) -> None:
    """The hash scan of one query: the old Python loop against the numpy scan, same results."""
    import os

    from memesearch.library.hashing import hamming
    from memesearch.search.by_image import DUPLICATE_BITS
    from memesearch.search.close_hashes import close_hashes

    store = SqliteStore(Path(tempfile.mkdtemp(prefix="hash-scan-")) / "library.db")
    rng = np.random.default_rng(2)
    now = time.time()
    with store.write() as conn:
        conn.executemany("INSERT INTO memes (path, sha256, phash, status, added_at, updated_at) VALUES (?, ?, ?, 'ok', ?, ?)",
                         ((f"/library/{i:07d}.jpg", f"{i:064x}", f"{int(value):016x}", now, now)
                          for i, value in enumerate(rng.integers(0, 2**63, size, dtype=np.int64))))
    queries = [f"{int(value):016x}" for value in rng.integers(0, 2**63, repeats, dtype=np.int64)]

    def python_loop(query: str) -> dict[int, int]:  # what by_image did per query before
        close = {meme_id: hamming(query, phash) for meme_id, phash in store.phashes()}
        return {meme_id: distance for meme_id, distance in close.items() if distance <= DUPLICATE_BITS}

    started = time.perf_counter()
    first = close_hashes(store, queries[0], DUPLICATE_BITS)
    cold = (time.perf_counter() - started) * 1000
    assert first == python_loop(queries[0])
    timings: dict[str, list[float]] = {"python loop": [], "numpy scan": [], "of which the change check": []}
    for query in queries:  # interleaved, so both see the same load
        for name, scan in (("python loop", python_loop), ("numpy scan", lambda q: close_hashes(store, q, DUPLICATE_BITS)),
                           ("of which the change check", lambda q: store.phashes_signature())):
            started = time.perf_counter()
            scan(query)
            timings[name].append((time.perf_counter() - started) * 1000)
    print(f"machine: {machine()}; load average {os.getloadavg()[0]:.1f}")
    print(f"hash scan of {size} perceptual hashes, {repeats} queries:")
    print(f"  numpy scan, first query (reads the hashes): {cold:.1f} ms")
    for name, values in timings.items():
        print(f"  {name}: median {statistics.median(values):.1f} ms")
    ratio = statistics.median(timings["python loop"]) / statistics.median(timings["numpy scan"])
    print(f"  ratio python / numpy: {ratio:.0f}x")
    store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=20)
    parser.add_argument("--hashes", type=int, default=0, help="measure only the hash scan at this many hashes")
    args = parser.parse_args()
    if args.hashes:
        hash_scan(args.hashes, args.queries)
        return
    work = Path(tempfile.mkdtemp(prefix="image-search-"))
    store = SqliteStore(work / "library.db")
    build_library(store, args.library)
    rng = np.random.default_rng(1)
    with store.write() as conn:
        conn.executemany("UPDATE memes SET phash = ? WHERE id = ?",
                         ((f"{int(value):016x}", meme_id) for meme_id, value in
                          zip(range(1, args.library + 1), rng.integers(0, 2**63, args.library))))
    memes = render_template_set(work / "queries", templates=max(1, args.queries // 5), variants=4, distractors=0)
    queries = []
    for meme in memes[: args.queries]:
        buffer = io.BytesIO()
        from PIL import Image

        Image.open(meme.path).convert("RGB").save(buffer, "JPEG", quality=80)
        queries.append(buffer.getvalue())
    core = SimpleNamespace(store=store, settings=Settings(home=work / "home"), ocr=None, visual=None)
    walls, cpus = [], []
    for data in queries:
        wall, cpu = time.perf_counter(), time.process_time()
        search_by_image(core, data, limit=10)
        walls.append((time.perf_counter() - wall) * 1000)
        cpus.append((time.process_time() - cpu) * 1000)
    print(f"machine: {machine()}")
    print(f"library: {args.library} memes with template features and perceptual hashes")
    print(f"first query (reads every colour layout): {walls[0]:.0f} ms wall, {cpus[0]:.0f} ms CPU")
    print(f"next {len(walls) - 1} queries: median {statistics.median(walls[1:]):.0f} ms wall, "
          f"{statistics.median(cpus[1:]):.0f} ms CPU, worst {max(walls[1:]):.0f} ms wall")
    store.close()


if __name__ == "__main__":
    main()
