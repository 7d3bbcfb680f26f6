"""The SQLite dialect: ``?`` placeholders, JSON lists, FTS5 + trigram text search, float32 blobs."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence

import numpy as np

from memesearch.store import sqlite_text
from memesearch.store.dialects import Dialect


class SqliteDialect(Dialect):
    name = "sqlite"

    def in_list(self, expression: str, sql_type: str = "bigint") -> str:
        # One JSON array parameter instead of one placeholder per value: no variable limit,
        # and the IN still looks ids and paths up through their indexes.
        return f"{expression} IN (SELECT value FROM json_each(?))"

    def list_param(self, values: Iterable) -> object:
        return json.dumps(list(values))

    def list_table(self, sql_type: str = "bigint") -> str:
        return "json_each(?)"

    def under_root(self, root: str, prefix: str) -> tuple[str, tuple]:
        # Paths under root/ sort (bytewise, SQLite's BINARY collation) between "root/" and "root0"
        # ('0' follows '/'), so the unique index on path finds them without a table scan.
        return "(path = ? OR (path >= ? AND path < ?))", (root, prefix, prefix[:-1] + "0")

    # -- full-text search ----------------------------------------------------------------
    def write_text(self, conn, meme_id, user_text, tags, descriptions, ocr_text, path) -> None:
        sqlite_text.write(conn, meme_id, user_text, tags, descriptions, ocr_text, path)

    def remove_text(self, conn, meme_id: int) -> None:
        sqlite_text.remove(conn, meme_id)

    def keyword_search(self, conn, words, phrases, limit) -> list[int]:
        return sqlite_text.search(conn, words, phrases, limit)

    # -- vectors: float32 bytes; search runs over an in-memory matrix (search.engine.VectorIndex)
    def vector_param(self, vector: np.ndarray) -> object:
        return np.asarray(vector, dtype=np.float32).tobytes()

    def decode_vectors(self, rows: Sequence) -> np.ndarray:
        return np.frombuffer(b"".join(row["data"] for row in rows), dtype=np.float32).reshape(len(rows), rows[0]["dim"])

    def vectors_written(self, conn, model_id: str, dims: set[int]) -> None:
        pass


SQLITE = SqliteDialect()
