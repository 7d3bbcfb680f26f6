"""The PostgreSQL dialect: ``%s`` placeholders, arrays, tsvector + pg_trgm search, pgvector."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np

from memesearch.store import postgres_text, postgres_vectors
from memesearch.store.dialects import Dialect


class PostgresDialect(Dialect):
    name = "postgres"
    mark = "%s"
    # Many workers on many machines: concurrent claims never take, or wait for, the same item.
    skip_locked = " FOR UPDATE SKIP LOCKED"
    vector_mark = "?::vector"

    def in_list(self, expression: str, sql_type: str = "bigint") -> str:
        return f"{expression} = ANY(?::{sql_type}[])"

    def list_param(self, values: Iterable) -> object:
        return list(values)

    def list_table(self, sql_type: str = "bigint") -> str:
        return f"unnest(?::{sql_type}[]) AS value"

    def under_root(self, root: str, prefix: str) -> tuple[str, tuple]:
        # A range on path would follow the database's collation, not bytes: compare the prefix.
        return "(path = ? OR left(path, ?) = ?)", (root, len(prefix), prefix)

    # -- full-text search (the search row goes with the meme row: ON DELETE CASCADE) ------------
    def write_text(self, conn, meme_id, user_text, tags, descriptions, ocr_text, path) -> None:
        postgres_text.write_rows(conn, [(meme_id, user_text, tags, descriptions, ocr_text, path)])

    def remove_text(self, conn, meme_id: int) -> None:
        pass

    def keyword_search(self, conn, words, phrases, limit) -> list[int]:
        return postgres_text.search(conn, words, phrases, limit)

    # -- vectors: pgvector, searched in the database (PostgresStore.vector_search) ---------------
    vector_column = "vector_send(v.vector)"

    def vector_param(self, vector: np.ndarray) -> object:
        return postgres_vectors.literal(vector)

    def decode_vectors(self, rows: Sequence) -> np.ndarray:
        return np.stack([postgres_vectors.decode(row["data"]) for row in rows])

    def vectors_written(self, conn, model_id: str, dims: set[int]) -> None:
        for dim in dims:
            postgres_vectors.ensure_index(conn, model_id, dim)


POSTGRES = PostgresDialect()
