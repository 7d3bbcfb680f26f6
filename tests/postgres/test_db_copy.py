"""`memesearch db copy` SQLite -> PostgreSQL and `memesearch db migrate`, through the real CLI."""

from __future__ import annotations

import json

import numpy as np
from typer.testing import CliRunner

from memesearch.cli import app
from memesearch.store.models import Description, FileRecord
from memesearch.store.postgres import PostgresStore
from memesearch.store.schema_postgres import SCHEMA_VERSION
from memesearch.store.sqlite import SqliteStore

runner = CliRunner()


def build_sqlite_library(path) -> dict:
    store = SqliteStore(path)
    folder = store.add_folder("/memes")
    ids = [
        store.insert_file(FileRecord(path=f"/memes/{n}.png", folder_id=folder.id, size=5, mtime=2.0, sha256=f"sha{n}",
                                     format="png", width=3, height=4))
        for n in range(6)
    ]
    duplicate = store.insert_file(FileRecord(path="/memes/copy.png", folder_id=folder.id, size=5, mtime=2.0, sha256="sha0"))
    store.set_ocr(ids[0], "ONE DOES NOT SIMPLY WALK INTO MORDOR", "rapidocr")
    store.set_ocr(ids[1], "Café für alle", "rapidocr")
    store.set_user_description(ids[2], "my favourite frog")
    store.set_description(ids[3], Description(model_id="florence", text="a cat in a box", backend="onnx", created_at=5))
    store.add_tags(ids[4], ["reaction", "Cats"])
    store.mark_stage(ids[5], "caption", "failed", "model crashed")
    store.put_vectors("minilm", [(i, f"h{i}", np.eye(384, dtype=np.float32)[i]) for i in ids[:4]])
    store.apply_import([], [], [{"path": "/elsewhere/later.png", "sha256": "not-here-yet", "tags": ["later"]}])
    run_id = store.create_run("describe", "florence", {"only": ids})
    store.add_run_items(run_id, ids)
    store.claim_run_items(run_id, 2, lease_s=60)
    store.set_status([ids[5]], "missing")
    store.close()
    return {"ids": ids, "duplicate": duplicate}


def test_db_copy_moves_everything_and_verifies(tmp_path, postgres_url):
    library = build_sqlite_library(tmp_path / "lib.db")
    ids = library["ids"]
    result = runner.invoke(app, ["--data-dir", str(tmp_path / "home"), "db", "copy", "--from", f"sqlite:///{tmp_path}/lib.db",
                                 "--to", postgres_url, "--json"], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    for table in ("folders", "memes", "descriptions", "tags", "meme_tags", "vectors", "stages", "pending_imports",
                  "runs", "run_items"):
        assert report["tables"][table]["source"] == report["tables"][table]["target"] > 0, table

    source, target = SqliteStore(tmp_path / "lib.db"), PostgresStore(postgres_url)
    all_ids = source.meme_ids(status=None)
    assert target.get_memes(all_ids) == source.get_memes(all_ids)  # every field, tag and description, same ids
    assert target.get_meme(library["duplicate"]).duplicate_of == ids[0]
    assert target.pending("caption") == source.pending("caption")  # job state came along
    assert target.stage_counts("caption") == source.stage_counts("caption")
    assert target.pending_records() == source.pending_records()
    assert target.vector_hashes("minilm") == source.vector_hashes("minilm")
    assert [i for i, _ in target.vector_search("minilm", np.eye(384, dtype=np.float32)[ids[2]], 1)] == [ids[2]]
    assert target.keyword_search(["doesnotsimply"], [], 5) == [ids[0], library["duplicate"]]  # same bytes, same OCR
    assert target.keyword_search(["cafe"], [], 5) == [ids[1]]
    assert target.keyword_search(["cats"], [], 5) == [ids[4]]
    assert target.ids_needing_vectors("minilm") == source.ids_needing_vectors("minilm")
    assert target.list_run_rows() == source.list_run_rows()  # runs, their items and leases
    assert target.create_run("index", None, {}) > source.list_run_rows()[0]["id"]
    # Sequences moved past the copied ids: new rows never collide.
    new_id = target.insert_file(FileRecord(path="/memes/new.png", folder_id=None, size=1, mtime=1.0))
    assert new_id > max(all_ids)
    target.add_tags(new_id, ["brand new"])
    source.close()
    target.close()


def test_db_copy_refuses_a_used_target(tmp_path, postgres_url):
    build_sqlite_library(tmp_path / "lib.db")
    used = PostgresStore(postgres_url)
    used.add_folder("/already/here")
    used.close()
    result = runner.invoke(app, ["db", "copy", "--from", f"sqlite:///{tmp_path}/lib.db", "--to", postgres_url])
    assert result.exit_code == 2
    assert "already holds a library" in result.output
    check = PostgresStore(postgres_url)
    assert check.counts()["total"] == 0
    check.close()


def test_db_migrate_reports_the_version(tmp_path, postgres_url):
    first = runner.invoke(app, ["--data-dir", str(tmp_path), "db", "migrate", "--url", postgres_url])
    assert first.exit_code == 0, first.output
    assert f"postgres schema version {SCHEMA_VERSION} ({SCHEMA_VERSION} migration" in first.output
    again = runner.invoke(app, ["--data-dir", str(tmp_path), "db", "migrate", "--url", postgres_url])
    assert "(0 migrations applied)" in again.output
    sqlite = runner.invoke(app, ["--data-dir", str(tmp_path), "db", "migrate"])
    assert sqlite.exit_code == 0 and "sqlite schema version" in sqlite.output
