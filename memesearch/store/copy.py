"""Copy a whole library from a SQLite file into an empty PostgreSQL database.

Rows move with their ids (so references, vectors and job state stay valid),
table by table, by binary COPY inside ONE transaction: a failure or a failed
verification leaves the target empty. Columns are matched by name, so tables
added by later migrations on both sides (job runs, leases...) copy without
changes here. Search rows are rebuilt from the copied texts, HNSW indexes are
built once at the end (much faster than row by row), identity sequences are
moved past the copied ids, and every table's row count is compared.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from memesearch.errors import ConfigError, InvalidInputError
from memesearch.store import postgres_text, postgres_vectors

# Parents before children; tables not listed here (added later) are copied after these.
_ORDER = ["folders", "memes", "descriptions", "tags", "meme_tags", "vectors", "stages", "pending_imports",
          "runs", "run_items"]
# Derived or bookkeeping tables: rebuilt on the target, never copied.
_SKIP = {"meta", "meme_search", "schema_version"}
_IDENTITY_TABLES = ("folders", "memes", "tags", "runs", "pending_imports")
_PG_KINDS = {"bigint": "int8", "integer": "int4", "smallint": "int4", "double precision": "float8", "real": "float8"}
_BATCH = 5000

Progress = Callable[[str, int, int | None], None]


def copy_sqlite_to_postgres(sqlite_path: Path | str, target, progress: Progress | None = None) -> dict:
    """Copy every row of the SQLite library at ``sqlite_path`` into ``target`` (an empty PostgresStore).

    Returns {"tables": {name: {"source": n, "target": n}}, "skipped": [...]}; raises if any count differs.
    """
    from memesearch.store.sqlite import SqliteStore

    path = Path(sqlite_path)
    if not path.is_file():
        raise InvalidInputError(f"no SQLite library at {path}")
    SqliteStore(path).close()  # bring the source to the current schema, so its columns are known
    source = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return _copy(source, target, progress or (lambda *_: None))
    finally:
        source.close()


def _copy(source: sqlite3.Connection, target, progress: Progress) -> dict:
    source_tables = _sqlite_tables(source)
    with target.write() as conn:
        if conn.execute("SELECT EXISTS (SELECT 1 FROM memes) OR EXISTS (SELECT 1 FROM folders) AS used").fetchone()["used"]:
            raise ConfigError("the target database already holds a library; db copy only fills an empty one",
                              hint="create a new database (or drop this one) and run db copy again")
        target_columns = _pg_columns(conn)
        tables = [t for t in _ORDER if t in source_tables] + sorted(set(source_tables) - set(_ORDER) - _SKIP)
        skipped = [t for t in tables if t not in target_columns]
        report: dict[str, dict[str, int]] = {}
        for table in tables:
            if table in skipped:
                continue
            columns = [c for c in source_tables[table] if c in target_columns[table]]
            total = source.execute(f"SELECT COUNT(*) FROM {table}").fetchone()[0]
            rows = _progressing(_read(source, table, columns), table, total, progress)
            kinds = [target_columns[table][c] for c in columns]
            postgres_vectors.copy_rows(conn, table, columns, kinds, rows)
            report[table] = {"source": total}
        _rebuild_search(conn, progress)
        _finish(conn)
        for table in report:
            report[table]["target"] = conn.execute(f"SELECT COUNT(*) AS n FROM {table}").fetchone()["n"]
        searchable = conn.execute("SELECT (SELECT COUNT(*) FROM memes) = (SELECT COUNT(*) FROM meme_search) AS ok").fetchone()
        wrong = {t: c for t, c in report.items() if c["source"] != c["target"]}
        if wrong or not searchable["ok"]:
            raise ConfigError(f"db copy verification failed, nothing was written: {wrong or 'search rows missing'}")
    return {"tables": report, "skipped": skipped}


def _sqlite_tables(conn: sqlite3.Connection) -> dict[str, list[str]]:
    names = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' AND sql NOT LIKE 'CREATE VIRTUAL%'")]
    # FTS5 shadow tables (meme_fts_data, ...) are internal to SQLite's text index.
    names = [n for n in names if not n.startswith(("sqlite_", "meme_fts", "meme_trigram"))]
    return {n: [r[1] for r in conn.execute(f"PRAGMA table_info({n})")] for n in names}


def _pg_columns(conn) -> dict[str, dict[str, str]]:
    """{table: {column: COPY kind}} of the target's tables."""
    found: dict[str, dict[str, str]] = {}
    for row in conn.execute("SELECT table_name, column_name, data_type, udt_name FROM information_schema.columns "
                            "WHERE table_schema = current_schema() ORDER BY ordinal_position"):
        kind = "vector" if row["udt_name"] == "vector" else _PG_KINDS.get(row["data_type"], "text")
        found.setdefault(row["table_name"], {})[row["column_name"]] = kind
    return found


def _read(source: sqlite3.Connection, table: str, columns: list[str]) -> Iterator[tuple]:
    cursor = source.execute(f"SELECT {', '.join(columns)} FROM {table}")
    vector_at = columns.index("vector") if table == "vectors" else -1
    while batch := cursor.fetchmany(_BATCH):
        for row in batch:
            if vector_at >= 0:
                row = (*row[:vector_at], np.frombuffer(row[vector_at], dtype=np.float32), *row[vector_at + 1:])
            yield row


def _progressing(rows: Iterator[tuple], label: str, total: int, progress: Progress) -> Iterator[tuple]:
    done = 0
    progress(label, 0, total)
    for row in rows:
        yield row
        done += 1
        if done % _BATCH == 0:
            progress(label, done, total)
    progress(label, done, total)


def _rebuild_search(conn, progress: Progress) -> None:
    """Search rows for every copied meme, from its texts, by COPY (job state stays as copied)."""
    total = conn.execute("SELECT COUNT(*) AS n FROM memes").fetchone()["n"]
    cursor = conn.cursor(name="memesearch_copy_texts")  # server-side: 1M texts never sit in memory at once
    cursor.execute(
        "SELECT m.id, m.user_description, m.ocr_text, m.path, "
        "COALESCE((SELECT string_agg(t.name, ' ' ORDER BY t.name) FROM meme_tags mt JOIN tags t ON t.id = mt.tag_id "
        "WHERE mt.meme_id = m.id), '') AS tags, "
        "COALESCE((SELECT string_agg(d.text, ' \n' ORDER BY d.model_id) FROM descriptions d WHERE d.meme_id = m.id), '') "
        "AS descriptions FROM memes m ORDER BY m.id"
    )
    done = 0
    while batch := cursor.fetchmany(_BATCH):
        # One COPY per batch: the connection cannot fetch from the cursor while a COPY is open.
        with conn.cursor().copy("COPY meme_search (meme_id, doc, folded) FROM STDIN") as copy:
            for row in batch:
                copy.write_row(postgres_text.search_row(
                    row["id"], row["user_description"], row["tags"], row["descriptions"], row["ocr_text"], row["path"]))
        done += len(batch)
        progress("search", done, total)
    cursor.close()


def _finish(conn) -> None:
    for table in _IDENTITY_TABLES:
        conn.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                     f"GREATEST((SELECT MAX(id) FROM {table}), 1), (SELECT MAX(id) FROM {table}) IS NOT NULL)")
    for model_id, dim in postgres_vectors.model_dims(conn):
        postgres_vectors.ensure_index(conn, model_id, dim)
    postgres_vectors.bump_vectors_version(conn)
