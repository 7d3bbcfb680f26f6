"""Rescan rate for unchanged files: the cost of `memesearch index` on a library that did not change.

    .venv/bin/python bench/bench_rescan.py --files 5000
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from memesearch.config import Settings  # noqa: E402
from memesearch.library.scanner import scan_folder  # noqa: E402
from memesearch.store.sqlite import SqliteStore  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--files", type=int, default=5000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "memes"
        for index in range(args.files):
            folder = root / f"dir{index % 50:02d}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (32, 24), (index % 256, (index // 256) % 256, 7)).save(folder / f"m{index}.png")
        store = SqliteStore(Path(tmp) / "db.sqlite")
        settings = Settings(home=Path(tmp) / "home")
        folder = store.add_folder(str(root))
        started = time.perf_counter()
        first = scan_folder(store, folder, settings)
        first_s = time.perf_counter() - started
        timings = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            summary = scan_folder(store, folder, settings)
            timings.append(time.perf_counter() - started)
            assert summary.unchanged == args.files
        median = statistics.median(timings)
        print(f"machine: {os.cpu_count()} cores; files: {args.files}")
        print(f"first scan (hash + decode + insert): {first.added} files in {first_s:.2f} s = {first.added / first_s:,.0f} files/s")
        print(f"rescan, unchanged (median of {args.repeats}): {median:.3f} s = {args.files / median:,.0f} files/s")
        store.close()


if __name__ == "__main__":
    main()
