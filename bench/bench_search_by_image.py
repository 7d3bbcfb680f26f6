"""Search by image: the cost of one query against a library of stored template features.

    .venv/bin/python bench/bench_search_by_image.py [--library 20000] [--queries 20]

Builds a real SQLite library like ``bench_templates.py cost`` (random features and
perceptual hashes: random descriptors never verify, like most of a real library), then
searches by real rendered memes that are not in it. OCR of the query is left out (the core
has none): its cost is the OCR figure above, paid once per query unless the file is
already in the library. Prints the first query (reads every colour layout) and the median
of the following ones (layouts kept between searches), wall and CPU.
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--library", type=int, default=20_000)
    parser.add_argument("--queries", type=int, default=20)
    args = parser.parse_args()
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
    core = SimpleNamespace(store=store, settings=Settings(home=work / "home"), ocr=None)
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
