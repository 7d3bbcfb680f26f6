"""Search latency on synthetic libraries of 10k to 1M memes (SQLite store as `memesearch search`
uses it: FTS5 keyword search, in-memory vectors — exact below 20k, int8 scan + exact re-rank
above, see memesearch/nearest.py — and RRF fusion).

Rows are synthetic but shaped like real ones: 6-14 word captions drawn from a
Zipf-distributed vocabulary (so common words match many rows), and 384-d unit
vectors drawn around 300 cluster centres (memes come in templates and topics).
Queries:
- "quote": 3-5 consecutive words of a random meme, as a person would remember them;
- "mixed": a quarter quotes, a quarter one or two words of a meme, a quarter a quote with
  one word misspelled (word matching finds little, so the any-word and trigram fallbacks
  run), a quarter words that appear in no meme (only vectors answer).

Two hybrid figures are reported: the engine alone (query vector precomputed, so no model
time) and end to end with the real MiniLM query embedding; the "where the time goes" line
gives the medians of the parts of a hybrid search (keyword search in SQLite, the vector
scan, fetching the hits' rows; the rest is parsing, template names and fusion).

Libraries are built once (bulk SQL matching the store's schema, no model) and cached in
--cache-dir, so a re-run starts at once; the first search of a run loads the vectors and,
above 20k, builds the int8 copy ("cold start").

    .venv/bin/python bench/bench_search.py --sizes 10000 100000
    .venv/bin/python bench/bench_search.py --memes 1000000 --queries 100
"""

from __future__ import annotations

import argparse
import os
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
from memesearch.text import filename_words, spaceless  # noqa: E402

DIM = 384
CENTRES = 300
#: Bumped whenever the generated library changes, so stale caches are not reused.
LIBRARY_VERSION = 2
BUILD_CHUNK = 20_000


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


def library_path(cache_dir: Path, count: int, seed: int) -> Path:
    return cache_dir / f"library-{count}-seed{seed}-v{LIBRARY_VERSION}.db"


def build_library(path: Path, count: int, seed: int = 0) -> None:
    """A ``count``-meme library at ``path`` through bulk inserts into the store's own schema
    (the same rows ``index`` writes: meme, FTS row with file name words, trigram row, vector)."""
    rng = random.Random(seed)
    nprng = np.random.default_rng(seed)
    vocab = np.array(make_vocabulary(rng))
    zipf = 1 / np.arange(1, len(vocab) + 1)
    centres = nprng.standard_normal((CENTRES, DIM)).astype(np.float32)
    partial = path.with_suffix(".partial")
    for leftover in path.parent.glob(partial.name + "*"):
        leftover.unlink()
    store = SqliteStore(partial)
    now = time.time()
    for start in range(1, count + 1, BUILD_CHUNK):
        ids = range(start, min(start + BUILD_CHUNK, count + 1))
        lengths = nprng.integers(6, 15, len(ids))
        words = vocab[nprng.choice(len(vocab), int(lengths.sum()), p=zipf / zipf.sum())]
        bounds = np.concatenate([[0], np.cumsum(lengths)])
        texts = [" ".join(words[bounds[i] : bounds[i + 1]]).upper() for i in range(len(ids))]
        vectors = centres[nprng.integers(0, CENTRES, len(ids))] + 0.6 * nprng.standard_normal((len(ids), DIM), np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        paths = [f"/bench/meme-{meme_id}.png" for meme_id in ids]
        with store.write() as conn:
            conn.executemany(
                "INSERT INTO memes (id, path, sha256, size, mtime, format, status, ocr_text, ocr_engine, added_at, updated_at) "
                "VALUES (?, ?, ?, 1, 1, 'png', 'ok', ?, 'bench', ?, ?)",
                [(i, p, f"{i:064x}", t, now, now) for i, p, t in zip(ids, paths, texts)],
            )
            conn.executemany(
                "INSERT INTO meme_fts (rowid, user_text, description, ocr_text, tags, filename) VALUES (?, '', '', ?, '', ?)",
                [(i, t, filename_words(p)) for i, p, t in zip(ids, paths, texts)],
            )
            conn.executemany("INSERT INTO meme_trigram (rowid, folded) VALUES (?, ?)",
                             [(i, spaceless(t)) for i, t in zip(ids, texts)])
            conn.executemany(
                "INSERT INTO vectors (meme_id, model_id, text_hash, dim, vector) VALUES (?, ?, 'h', ?, ?)",
                [(i, PreparedQueryEmbedder.model_id, DIM, v.tobytes()) for i, v in zip(ids, vectors)],
            )
        print(f"  built {ids[-1]:,} of {count:,}", end="\r", flush=True)
    with store.write() as conn:
        conn.execute("INSERT INTO meme_fts (meme_fts) VALUES ('optimize')")  # as a settled library's index is
        conn.execute("INSERT INTO meme_trigram (meme_trigram) VALUES ('optimize')")
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'vectors_version'")
    store.close()
    partial.rename(path)


def cached_library(cache_dir: Path, count: int, seed: int = 0) -> tuple[Path, float | None]:
    """The library's path and its build time in seconds (None when it came from the cache)."""
    path = library_path(cache_dir, count, seed)
    if path.exists():
        return path, None
    cache_dir.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    build_library(path, count, seed)
    return path, time.perf_counter() - started


def misspell(word: str, rng: random.Random) -> str:
    at = rng.randrange(len(word))
    return word[:at] + rng.choice("xyjw") + word[at + 1 :]


def make_queries(store: SqliteStore, count: int, queries: int, kind: str) -> list[tuple[str, np.ndarray]]:
    """(text, query vector) pairs: the vector lies near the quoted meme's, as a real query's would."""
    rng = random.Random(1)
    chosen = [rng.randrange(1, count + 1) for _ in range(queries)]
    rows = {row["id"]: row for row in store.query(
        "SELECT m.id, m.ocr_text, v.vector FROM memes m JOIN vectors v ON v.meme_id = m.id "
        "WHERE m.id IN (SELECT value FROM json_each(?))", (str(chosen),))}
    made = []
    for number, meme_id in enumerate(chosen):
        words = rows[meme_id]["ocr_text"].lower().split()
        vector = np.frombuffer(rows[meme_id]["vector"], np.float32)
        style = "quote" if kind == "quote" else ("quote", "short", "typo", "absent")[number % 4]
        length = rng.randint(1, 2) if style == "short" else rng.randint(3, 5)
        start = rng.randrange(max(1, len(words) - length))
        picked = words[start : start + length]
        if style == "typo":
            at = rng.randrange(len(picked))
            picked[at] = misspell(picked[at], rng)
        if style == "absent":
            picked = [f"zq{rng.randrange(10**6)}" for _ in range(length)]
        noisy = vector + 0.3 * np.random.default_rng(meme_id).standard_normal(DIM).astype(np.float32)
        made.append((" ".join(picked), noisy / np.linalg.norm(noisy)))
    return made


class PartTimer:
    """Wraps the engine's calls into the store and the vector index to time each part."""

    PARTS = ("embed", "keyword", "vector", "rows")

    def __init__(self, engine: SearchEngine) -> None:
        self.spent = {part: 0.0 for part in self.PARTS}
        engine.store = _Timed(engine.store, self, {"keyword_search": "keyword", "get_memes": "rows"})
        engine.vectors = _Timed(engine.vectors, self, {"search": "vector"})
        engine._embed_query = _Timed(engine, self, {"_embed_query": "embed"})._embed_query

    def reset(self) -> None:
        self.spent = {part: 0.0 for part in self.PARTS}


class _Timed:
    def __init__(self, inner, timer: PartTimer, methods: dict[str, str]) -> None:
        self._inner, self._timer, self._methods = inner, timer, methods

    def __getattr__(self, name: str):
        attribute = getattr(self._inner, name)
        part = self._methods.get(name)
        if part is None:
            return attribute

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return attribute(*args, **kwargs)
            finally:
                self._timer.spent[part] += (time.perf_counter() - started) * 1000

        return timed


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(values, q))


def measure(engine: SearchEngine, embedder: Embedder, queries, mode: str,
            timer: PartTimer | None = None) -> tuple[list[float], dict[str, list[float]]]:
    timings, parts = [], {part: [] for part in PartTimer.PARTS}
    for text, vector in queries:
        if isinstance(embedder, PreparedQueryEmbedder):
            embedder.next_vector = vector
        if timer is not None:
            timer.reset()
        started = time.perf_counter()
        engine.search(text, mode=mode, limit=20)
        timings.append((time.perf_counter() - started) * 1000)
        if timer is not None:
            for part, spent in timer.spent.items():
                parts[part].append(spent)
    return timings, parts


def row(size: int, label: str, timings: list[float]) -> None:
    load = os.getloadavg()[0]
    print(f"{size:>9,} {label:<30} {statistics.median(timings):>8.2f} {percentile(timings, 95):>8.2f} {load:>6.1f}",
          flush=True)


def where_time_goes(parts: dict[str, list[float]]) -> None:
    print(f"{'':>9} where a hybrid search's time goes (p50 ms): " + ", ".join(
        f"{part} {statistics.median(spent):.2f}" for part, spent in parts.items()), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", "--memes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--cache-dir", type=Path, default=Path(tempfile.gettempdir()) / "memesearch-bench-search",
                        help="where built libraries are kept for the next run")
    parser.add_argument("--build-only", action="store_true", help="build (or find) the libraries, measure nothing")
    parser.add_argument("--no-minilm", action="store_true", help="skip the end-to-end run with the real query embedder")
    args = parser.parse_args()
    print(machine_line())
    if args.build_only:
        for size in args.sizes:
            path, build_s = cached_library(args.cache_dir, size)
            print(f"{size:>9,} library {path} ({'built in %.0f s' % build_s if build_s else 'cached'})")
        return
    minilm = None
    if not args.no_minilm:
        from memesearch.ml.minilm import MiniLmEmbedder

        minilm = MiniLmEmbedder(cache_dir=Path(tempfile.gettempdir()) / "memesearch-bench-minilm")
        minilm.embed_query("warm up")
    for size in args.sizes:
        path, build_s = cached_library(args.cache_dir, size)
        print(f"{size:>9,} library {path} ({'built in %.0f s' % build_s if build_s else 'cached'}, "
              f"{path.stat().st_size / 1e9:.2f} GB)")
        store = SqliteStore(path)
        embedder = PreparedQueryEmbedder()
        engine = SearchEngine(store, embedder)
        started = time.perf_counter()
        engine.search("warm up the vector matrix", limit=5)
        print(f"{size:>9,} cold start (load vectors, build index): {time.perf_counter() - started:.1f} s")
        print(f"{'memes':>9} {'queries, mode':<30} {'p50 ms':>8} {'p95 ms':>8} {'load1':>6}")
        index = engine.vectors
        timer = PartTimer(engine)
        for kind in ("quote", "mixed"):
            queries = make_queries(store, size, args.queries, kind)
            for mode in ("keyword", "vector", "hybrid"):
                timings, parts = measure(engine, embedder, queries, mode, timer)
                row(size, f"{kind}, {mode} (engine)", timings)
            where_time_goes(parts)
            if minilm is not None:
                real = SearchEngine(store, minilm)
                real.vectors = index  # same stored vectors; only the query embedding is real
                timings, parts = measure(real, minilm, queries, "hybrid", PartTimer(real))
                row(size, f"{kind}, hybrid (+MiniLM query)", timings)
                where_time_goes(parts)
                embedding = []
                for text, _ in queries:
                    started = time.perf_counter()
                    minilm.embed_query(text)
                    embedding.append((time.perf_counter() - started) * 1000)
                row(size, f"{kind}, MiniLM query alone", embedding)
        store.close()


if __name__ == "__main__":
    main()
