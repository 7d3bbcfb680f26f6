"""Search latency on synthetic libraries of 10k and 100k memes (SQLite store, in-memory vectors:
exact below 20k, int8 scan + exact re-rank above, see memesearch/nearest.py).

Rows are synthetic but shaped like real ones: 6-14 word captions drawn from a
Zipf-distributed vocabulary (so common words match many rows), and 384-d
vectors drawn around 300 cluster centres (memes come in templates and topics).
Queries quote 3-5 consecutive words of a random meme, as a person would.

Two hybrid figures are reported: the engine alone (query vector precomputed)
and end to end with the real MiniLM query embedding.

    .venv/bin/python bench/bench_search.py --sizes 10000 100000
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from machine import machine_line  # noqa: E402

from memesearch.ml.base import Embedder  # noqa: E402
from memesearch.search.engine import SearchEngine  # noqa: E402
from memesearch.store.sqlite import SqliteStore  # noqa: E402
from memesearch.text import spaceless  # noqa: E402

DIM = 384


class PreparedQueryEmbedder(Embedder):
    """Returns a vector set before each query: isolates engine time from model time."""

    model_id = "bench-vectors"
    dim = DIM

    def __init__(self) -> None:
        super().__init__()
        self.next_vector = np.zeros(DIM, dtype=np.float32)

    def embed_queries(self, texts) -> np.ndarray:
        return np.tile(self.next_vector, (len(texts), 1))

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        return np.tile(self.next_vector, (len(texts), 1))


def make_vocabulary(rng: random.Random, size: int = 6000) -> list[str]:
    syllables = ["ka", "lo", "mi", "ne", "ru", "ta", "po", "shi", "ven", "dor", "gal", "bre", "qui", "zu", "fe", "an"]
    words = {"".join(rng.choice(syllables) for _ in range(rng.randint(1, 4))) for _ in range(size * 2)}
    return sorted(words)[:size]


def build_library(store: SqliteStore, count: int, seed: int = 0) -> tuple[list[str], np.ndarray]:
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    vocab = make_vocabulary(rng)
    weights = [1 / (rank + 1) for rank in range(len(vocab))]  # Zipf
    centres = nprng.standard_normal((300, DIM)).astype(np.float32)
    texts, vectors = [], np.empty((count, DIM), dtype=np.float32)
    now = time.time()
    with store.write() as conn:
        for meme_id in range(1, count + 1):
            text = " ".join(rng.choices(vocab, weights, k=rng.randint(6, 14))).upper()
            vector = centres[rng.randrange(300)] + 0.6 * nprng.standard_normal(DIM).astype(np.float32)
            vector /= np.linalg.norm(vector)
            texts.append(text)
            vectors[meme_id - 1] = vector
            conn.execute(
                "INSERT INTO memes (id, path, sha256, size, mtime, format, status, ocr_text, ocr_engine, added_at, updated_at) "
                "VALUES (?, ?, ?, 1, 1, 'png', 'ok', ?, 'bench', ?, ?)",
                (meme_id, f"/bench/{meme_id}.png", f"{meme_id:064x}", text, now, now),
            )
            conn.execute("INSERT INTO meme_fts (rowid, user_text, description, ocr_text, tags) VALUES (?, '', '', ?, '')", (meme_id, text))
            conn.execute("INSERT INTO meme_trigram (rowid, folded) VALUES (?, ?)", (meme_id, spaceless(text)))
            conn.execute(
                "INSERT INTO vectors (meme_id, model_id, text_hash, dim, vector) VALUES (?, ?, 'h', ?, ?)",
                (meme_id, PreparedQueryEmbedder.model_id, DIM, vector.tobytes()),
            )
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'vectors_version'")
    return texts, vectors


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def measure(engine: SearchEngine, embedder: PreparedQueryEmbedder, queries, mode: str) -> list[float]:
    timings = []
    for text, vector in queries:
        embedder.next_vector = vector
        started = time.perf_counter()
        engine.search(text, mode=mode, limit=20)
        timings.append((time.perf_counter() - started) * 1000)
    return timings


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--no-minilm", action="store_true", help="skip the end-to-end run with the real query embedder")
    args = parser.parse_args()
    print(machine_line())
    minilm = None
    if not args.no_minilm:
        from memesearch.ml.minilm import MiniLmEmbedder

        minilm = MiniLmEmbedder(cache_dir=Path(tempfile.gettempdir()) / "memesearch-bench-minilm")
        minilm.embed_query("warm up")
    print(f"{'memes':>8} {'mode':<22} {'p50 ms':>8} {'p95 ms':>8}")
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            store = SqliteStore(Path(tmp) / "bench.db")
            built = time.perf_counter()
            texts, vectors = build_library(store, size)
            build_s = time.perf_counter() - built
            embedder = PreparedQueryEmbedder()
            engine = SearchEngine(store, embedder)
            rng = random.Random(1)
            queries = []
            for _ in range(args.queries):
                index = rng.randrange(size)
                words = texts[index].split()
                length = rng.randint(3, 5)
                start = rng.randrange(max(1, len(words) - length))
                noisy = vectors[index] + 0.3 * np.random.default_rng(index).standard_normal(DIM).astype(np.float32)
                queries.append((" ".join(words[start : start + length]).lower(), noisy / np.linalg.norm(noisy)))
            engine.search("warm up the vector matrix", limit=5)
            for mode in ("keyword", "vector", "hybrid"):
                timings = measure(engine, embedder, queries, mode)
                label = f"{mode} (engine)"
                print(f"{size:>8} {label:<22} {statistics.median(timings):>8.2f} {percentile(timings, 95):>8.2f}")
            if minilm is not None:
                real = SearchEngine(store, minilm)
                real.vectors = engine.vectors  # same stored vectors; only the query embedding is real
                timings = []
                for text, _ in queries:
                    started = time.perf_counter()
                    real.search(text, mode="hybrid", limit=20)
                    timings.append((time.perf_counter() - started) * 1000)
                print(f"{size:>8} {'hybrid (+MiniLM query)':<22} {statistics.median(timings):>8.2f} {percentile(timings, 95):>8.2f}")
            print(f"{size:>8} (library built in {build_s:.1f} s)")
            store.close()


if __name__ == "__main__":
    main()
