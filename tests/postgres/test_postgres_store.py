"""PostgreSQL-only behaviour: schema versions, store selection, HNSW vector search, engine wiring.

The shared Store contract runs against PostgreSQL from tests/test_store.py (the
``store`` fixture is parametrised over both stores); these tests cover what
only the PostgreSQL store has.
"""

from __future__ import annotations

import sys

import numpy as np
import pytest

from memesearch.config import Settings
from memesearch.errors import MissingDependencyError, SchemaTooNewError
from memesearch.store import open_store
from memesearch.store.models import FileRecord
from memesearch.store.postgres import PostgresStore
from memesearch.store.postgres_vectors import index_name
from memesearch.store.schema_postgres import SCHEMA_VERSION


def add_memes(store, count: int) -> list[int]:
    return [
        store.insert_file(FileRecord(path=f"/m/{i}.png", folder_id=None, size=1, mtime=1.0, sha256=f"s{i}", format="png"))
        for i in range(count)
    ]


def clustered(count: int, dim: int, seed: int) -> np.ndarray:
    """Unit vectors around a few centres, like embeddings of memes from a few templates."""
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(8, dim))
    vectors = centres[rng.integers(0, 8, count)] + 0.6 * rng.normal(size=(count, dim))
    return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).astype(np.float32)


def exact_top(ids: list[int], matrix: np.ndarray, query: np.ndarray, k: int) -> list[int]:
    scores = matrix @ query
    return [ids[i] for i in np.argsort(-scores, kind="stable")[:k]]


def test_schema_is_versioned_and_migrate_is_idempotent(postgres_url):
    store = PostgresStore(postgres_url)
    assert store.schema_version == SCHEMA_VERSION
    assert store.migrate() == 0
    assert store.integrity_ok()
    store.close()


def test_pending_imports_of_schema_2_survive_the_upgrade(postgres_url):
    """Migration 3 turns hash-keyed waiting records into rows of their own; they still apply."""
    import json

    import psycopg

    from memesearch.store.schema_postgres import MIGRATIONS

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        conn.execute("INSERT INTO schema_version VALUES (2)")
        for migration in MIGRATIONS[:2]:
            conn.execute(migration)
        conn.execute("INSERT INTO pending_imports VALUES (%s, %s)", ("s-old", json.dumps(
            {"sha256": "s-old", "paths": ["/old/a.png"], "user_description": "from schema 2", "tags": ["v1"]})))
    store = PostgresStore(postgres_url)
    assert store.schema_version == SCHEMA_VERSION
    meme_id = store.insert_file(FileRecord(path="/new/a.png", folder_id=None, size=1, mtime=1.0, sha256="s-old"))
    assert (store.get_meme(meme_id).user_description, store.get_meme(meme_id).tags) == ("from schema 2", ["v1"])
    assert store.pending_records() == []
    store.close()


def test_newer_schema_is_refused(postgres_url):
    PostgresStore(postgres_url).close()
    import psycopg

    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE schema_version SET version = %s", (SCHEMA_VERSION + 1,))
    with pytest.raises(SchemaTooNewError, match="understands up to version"):
        PostgresStore(postgres_url)


def test_open_store_selects_postgres_by_url(postgres_url, tmp_path):
    store = open_store(Settings(home=tmp_path, database_url=postgres_url))
    assert store.kind == "postgres"
    store.close()


def test_missing_psycopg_names_the_extra(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "psycopg", None)  # import psycopg now raises ImportError
    with pytest.raises(MissingDependencyError, match="psycopg") as raised:
        open_store(Settings(home=tmp_path, database_url="postgresql://nobody@127.0.0.1:1/none"))
    assert "memesearch[postgres]" in raised.value.hint


def test_hnsw_index_per_model_is_used_and_matches_exact(postgres_url):
    store = PostgresStore(postgres_url)
    ids = add_memes(store, 400)
    matrix = clustered(400, 384, seed=1)
    store.put_vectors("model-a", [(i, "h", v) for i, v in zip(ids, matrix)])
    store.put_vectors("model-b", [(ids[0], "h", np.ones(8, dtype=np.float32) / np.sqrt(8))])

    names = {row["indexname"] for row in store.query("SELECT indexname FROM pg_indexes WHERE tablename = 'vectors'")}
    assert {index_name("model-a", 384), index_name("model-b", 8)} <= names
    query = clustered(1, 384, seed=2)[0]
    with store.write() as conn:  # tiny table: make the planner take the index anyway
        conn.execute("SET LOCAL enable_seqscan = off")
        plan = " ".join(str(row) for row in conn.execute(
            "EXPLAIN SELECT meme_id FROM vectors v WHERE v.model_id = 'model-a' AND v.dim = 384 "
            "ORDER BY (v.vector::vector(384)) <=> %s::vector(384) LIMIT 10", (str(query.tolist()),)))
    assert index_name("model-a", 384) in plan

    hits = store.vector_search("model-a", query, 10)
    assert [i for i, _ in hits] == exact_top(ids, matrix, query, 10)
    assert hits[0][1] == pytest.approx(float(matrix[ids.index(hits[0][0])] @ query), abs=1e-5)
    assert [i for i, _ in store.vector_search("model-b", np.ones(8, dtype=np.float32), 5)] == [ids[0]]  # models never mix
    store.close()


def test_vector_search_respects_allowed_and_missing(postgres_url):
    store = PostgresStore(postgres_url)
    ids = add_memes(store, 50)
    matrix = clustered(50, 16, seed=3)
    store.put_vectors("m", [(i, "h", v) for i, v in zip(ids, matrix)])
    query = matrix[0]
    assert store.vector_search("m", query, 1)[0][0] == ids[0]
    store.set_status([ids[0]], "missing")
    assert ids[0] not in [i for i, _ in store.vector_search("m", query, 50)]
    allowed = {ids[5], ids[7]}
    assert {i for i, _ in store.vector_search("m", query, 10, allowed)} == allowed
    assert store.vector_search("m", query, 10, set()) == []
    assert np.allclose(store.vector_of("m", ids[3]), matrix[3])
    store.close()


def test_search_engine_uses_database_vector_search(postgres_url):
    from memesearch.ml.fake import FakeEmbedder
    from memesearch.search.engine import SearchEngine, StoreVectorIndex

    store = PostgresStore(postgres_url)
    embedder = FakeEmbedder()
    ids = add_memes(store, 3)
    texts = ["grumpy cat says no", "doge much wow", "success kid fist"]
    for meme_id, text in zip(ids, texts):
        store.set_ocr(meme_id, text, "test-ocr")
    store.put_vectors(embedder.model_id, [(i, "h", v) for i, v in zip(ids, embedder.embed(texts))])
    engine = SearchEngine(store, embedder)
    assert isinstance(engine.vectors, StoreVectorIndex)
    assert engine.search("much wow", mode="vector", limit=1).hits[0].id == ids[1]
    assert engine.search("grumpy cat", mode="hybrid", limit=3).hits[0].id == ids[0]
    similar = [i for i, _ in engine.similar(ids[2], limit=5)]
    assert sorted(similar) == sorted(ids[:2])  # every other meme, never the meme itself
    store.close()


def test_workers_on_separate_connections_never_claim_the_same_item(postgres_url):
    import threading

    stores = [PostgresStore(postgres_url) for _ in range(3)]  # like three worker processes
    ids = add_memes(stores[0], 60)
    run_id = stores[0].create_run("describe", "fake", {})
    stores[0].add_run_items(run_id, ids)
    claimed: list[int] = []

    def work(store) -> None:
        while batch := store.claim_run_items(run_id, 2, lease_s=60):
            claimed.extend(batch)
            for meme_id in batch:
                assert store.finish_run_item(run_id, meme_id, "done")

    threads = [threading.Thread(target=work, args=(store,)) for store in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(claimed) == ids
    assert stores[0].get_run_row(run_id)["counts"]["done"] == len(ids)
    for store in stores:
        store.close()


def test_both_stores_implement_the_store_protocol(store):
    import inspect

    from memesearch.store.base import Store

    assert isinstance(store, Store)
    for name, member in inspect.getmembers(Store, callable):
        if not name.startswith("_"):
            assert callable(getattr(store, name)), name


def test_very_common_words_alone_do_not_make_keyword_hits_in_big_libraries(postgres_url, monkeypatch):
    from memesearch.store import postgres_text

    store = PostgresStore(postgres_url)
    ids = add_memes(store, 60)
    for meme_id in ids:
        store.set_ocr(meme_id, f"the usual words {meme_id}" if meme_id % 2 else f"other common text {meme_id}", "test-ocr")
    frog = ids[7]
    store.set_user_description(frog, "a frog drinking tea")
    with store.write() as conn:
        conn.execute("ANALYZE meme_search")
    usual = [i for i in ids if i % 2]
    # No meme has every word, so the any-word tier runs. Small libraries rank every match,
    # exactly like SQLite: every meme with "usual", and the frog.
    assert set(store.keyword_search(["usual", "frog", "zebra"], [], 100)) == set(usual) | {frog}
    monkeypatch.setattr(postgres_text, "_BIG_LIBRARY", 10)  # pretend this is a big library
    assert store.keyword_search(["usual", "frog", "zebra"], [], 100) == [frog]
    # Only common words in the query: they are all the query has, so they still match.
    assert len(store.keyword_search(["usual", "other"], [], 100)) == 60
    store.close()


def test_store_reconnects_after_the_server_drops_its_connection(postgres_url):
    import psycopg

    store = PostgresStore(postgres_url)
    meme_id = add_memes(store, 1)[0]
    with psycopg.connect(postgres_url, autocommit=True) as admin:  # like a server restart or failover
        admin.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                      "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    with pytest.raises(psycopg.OperationalError):
        store.get_meme(meme_id)  # the call that meets the dead connection fails...
    assert store.get_meme(meme_id).id == meme_id  # ...and the next one reconnects
    store.close()


def test_ids_beyond_bigint_are_unknown_not_errors(store):
    from memesearch.errors import NotFoundError

    huge = 10**20  # /memes/100000000000000000000 in a URL
    assert store.get_memes([huge]) == []
    with pytest.raises(NotFoundError):
        store.get_meme(huge)
    with pytest.raises(NotFoundError):
        store.add_tags(huge, ["x"])
    assert store.get_run_row(huge) is None


def test_migration_5_indexes_the_file_names_of_an_existing_library(postgres_url):
    """A database from before file names were indexed (schema 4, search rows without them)
    finds memes by file name once opened by this version."""
    from memesearch.store import postgres_text

    store = PostgresStore(postgres_url)
    meme_id = store.insert_file(FileRecord(path="/m/drake-hotline-bling.png", folder_id=None, size=1, mtime=1.0,
                                           sha256="s1", format="png"))
    store.set_ocr(meme_id, "hello there", "test-ocr")
    with store.write() as conn:  # back to schema 4: the search row as version 4 wrote it
        conn.execute("UPDATE meme_search SET doc = %s::tsvector WHERE meme_id = %s",
                     (postgres_text.document("", "", "", "hello there"), meme_id))
        conn.execute("ALTER TABLE tags DROP COLUMN color")  # undo migration 6 (library care)
        conn.execute("DROP TABLE excluded_paths")
        conn.execute("UPDATE schema_version SET version = 4")
    assert store.keyword_search(["drake"], [], 10) == []
    store.close()
    reopened = PostgresStore(postgres_url)
    try:
        assert reopened.schema_version == SCHEMA_VERSION
        assert reopened.keyword_search(["drake"], [], 10) == [meme_id]
        assert reopened.keyword_search(["hello"], [], 10) == [meme_id]
    finally:
        reopened.close()
