"""Export/import time on a synthetic SQLite library (export format version 2, records keyed by path).

Usage:  .venv/bin/python bench/bench_transfer.py [--memes 20000]

Times: export; import into a library that indexed the same files (every record found
by path); import into an empty library (every record waits) and then indexing the
files one by one (each insert_file claims its waiting record). A tenth of the files
are byte-identical copies and every meme carries a description, two tags and OCR text.
No files are read: the library is built with insert_file, as the scanner would.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

from memesearch.store.models import Description, FileRecord
from memesearch.store.sqlite import SqliteStore
from memesearch.store.transfer import export_library, import_library


def files(count: int, root: str) -> list[FileRecord]:
    return [FileRecord(path=f"{root}/dir{n % 50}/meme {n}.png", folder_id=None, size=1000 + n, mtime=1.0,
                       sha256=f"{(n if n % 10 else 0):064x}", format="png", width=10, height=10, frames=1)
            for n in range(count)]


def build(db: Path, count: int, root: str, *, texts: bool) -> SqliteStore:
    store = SqliteStore(db)
    store.add_folder(root)
    for n, record in enumerate(files(count, root)):
        meme_id = store.insert_file(record)
        if texts:
            store.set_user_description(meme_id, f"meme number {n}, the one with the cat")
            store.add_tags(meme_id, [f"tag{n % 100}", "reaction"])
            store.set_description(meme_id, Description(model_id="florence-2-base", text=f"a cat, picture {n}",
                                                       backend="onnx", dtype="int8", created_at=1.0))
    return store


def timed(label: str, action) -> float:
    start = time.perf_counter()
    result = action()
    seconds = time.perf_counter() - start
    print(json.dumps({"step": label, "seconds": round(seconds, 2), "result": result}))
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memes", type=int, default=20_000)
    args = parser.parse_args()
    root = "/bench/library/memes"
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        source = build(tmp_path / "source.db", args.memes, root, texts=True)
        export = tmp_path / "export.json"
        timed("export", lambda: export_library(source, export))
        indexed = build(tmp_path / "indexed.db", args.memes, root, texts=False)
        timed("import, files indexed", lambda: import_library(indexed, export))
        empty = SqliteStore(tmp_path / "empty.db")
        empty.add_folder(root)
        timed("import, nothing indexed yet", lambda: import_library(empty, export))

        def index_all() -> int:
            for record in files(args.memes, root):
                empty.insert_file(record)
            return len(empty.pending_records())

        timed("index after import (records claimed)", index_all)
        timed("index without waiting records (baseline)", lambda: build(tmp_path / "plain.db", args.memes, root, texts=False) and 0)


if __name__ == "__main__":
    main()
