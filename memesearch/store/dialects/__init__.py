"""What differs between SQLite and PostgreSQL, and nothing else: one small object per database.

The store's statements are written once (``store/sql_store.py``, ``store/sql_text.py``,
``store/care.py``, ``store/templates.py``) with ``?`` placeholders and SQL both databases
accept (SQLite >= 3.35 knows ``ON CONFLICT DO NOTHING``, ``RETURNING`` and ``COUNT(*) FILTER``).
A dialect supplies only:

- the placeholder, and how one parameter carries a list of values (``in_list``);
- the path-prefix test the scanner's "every meme under this root" needs (each database
  has its own index-friendly form);
- full-text search: writing, removing and querying a meme's search row
  (FTS5 + trigram tables in SQLite, a weighted tsvector + pg_trgm row in PostgreSQL);
- vectors: how one is written and read back (float32 blob vs pgvector), and what a write
  must prepare (the per-model HNSW index in PostgreSQL);
- row locking for concurrent claims (``FOR UPDATE SKIP LOCKED`` in PostgreSQL; SQLite has
  one writer at a time, so none is needed).

DDL stays an append-only migration list per database (``schema_sqlite``, ``schema_postgres``);
connections, transactions and migrations stay in each store class (``sqlite.py``, ``postgres.py``).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np


class Dialect:
    name: str
    #: The DB-API placeholder of the driver ("?" for sqlite3, "%s" for psycopg).
    mark: str = "?"
    #: Appended to the SELECT that picks rows to claim (run items), so concurrent claimers skip
    #: each other's rows instead of waiting.
    skip_locked: str = ""
    #: The placeholder of a vector parameter.
    vector_mark: str = "?"

    def sql(self, statement: str) -> str:
        """A statement written with ``?`` placeholders, in this driver's placeholder."""
        return statement if self.mark == "?" else statement.replace("?", self.mark)

    # -- lists of values ------------------------------------------------------------------
    def in_list(self, expression: str, sql_type: str = "bigint") -> str:
        """``expression`` is one of the values of a single list parameter (see ``list_param``)."""
        raise NotImplementedError

    def list_param(self, values: Iterable) -> object:
        raise NotImplementedError

    def list_table(self, sql_type: str = "bigint") -> str:
        """A FROM item whose column ``value`` holds the values of one list parameter."""
        raise NotImplementedError

    # -- paths ------------------------------------------------------------------------------
    def under_root(self, root: str, prefix: str) -> tuple[str, tuple]:
        """(condition, params): ``path`` is ``root`` or starts with ``prefix`` (root + "/")."""
        raise NotImplementedError

    # -- full-text search ----------------------------------------------------------------
    def write_text(self, conn, meme_id: int, user_text: str, tags: str, descriptions: str, ocr_text: str,
                   path: str) -> None:
        """Replace the search row of one meme."""
        raise NotImplementedError

    def remove_text(self, conn, meme_id: int) -> None:
        """Drop the search row of one meme (before its meme row is deleted)."""
        raise NotImplementedError

    def keyword_search(self, conn, words: list[str], phrases: list[str], limit: int) -> list[int]:
        raise NotImplementedError

    # -- vectors ----------------------------------------------------------------------------
    #: The SELECT expression that reads ``v.vector`` back as bytes ``decode_vectors`` understands.
    vector_column: str = "v.vector"

    def vector_param(self, vector: np.ndarray) -> object:
        raise NotImplementedError

    def decode_vectors(self, rows: Sequence) -> np.ndarray:
        """A (rows, dim) float32 matrix from rows with ``dim`` and ``data`` (``vector_column``)."""
        raise NotImplementedError

    def vectors_written(self, conn, model_id: str, dims: set[int]) -> None:
        """Called in the transaction that wrote vectors of ``model_id`` with these dimensions."""
