"""SQLite schema as an ordered list of migrations.

``PRAGMA user_version`` holds how many migrations have run. Migrations are only
ever appended: editing an old one would leave existing databases behind. Tables
both databases share come from ``schema_tables`` with SQLite's column types.
"""

from __future__ import annotations

from memesearch.store.schema_tables import (
    CARE, FOLDERS_AND_MEMES, MEME_TAGS, PENDING_IMPORTS_INDEXES, PENDING_IMPORTS_TABLE, RUNS, SEARCH_REBUILD,
    SQLITE_TYPES as T, STAGES_AND_META, TEMPLATES, VECTORS, ddl,
)

MIGRATIONS: list[str] = [
    # 1: the library, its texts, tags, vectors and per-stage status.
    ddl(FOLDERS_AND_MEMES, T) + """
    CREATE TABLE tags (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE
    );
""" + ddl(MEME_TAGS, T) + ddl(VECTORS, T, vector="BLOB") + ddl(STAGES_AND_META, T) + """
    -- Keyword search. Words: unicode61 folds case and diacritics for any script.
    CREATE VIRTUAL TABLE meme_fts USING fts5(
        user_text, description, ocr_text, tags,
        tokenize = 'unicode61 remove_diacritics 2'
    );
    -- Substrings: all text folded and stripped of spaces and punctuation, so OCR
    -- that lost its spaces (ONEDOESNOTSIMPLY) still matches "does not simply".
    CREATE VIRTUAL TABLE meme_trigram USING fts5(folded, tokenize = 'trigram');
    """,
    # 2: bulk runs (describe, index, ...) and their per-meme work items with leases.
    ddl(RUNS, T),
    # 3: template groups: picture features, groups, OCR caption boxes.
    ddl(TEMPLATES, T),
    # 4: pending import records keyed by path, one row per record.
    """
    ALTER TABLE pending_imports RENAME TO pending_imports_v1;
""" + ddl(PENDING_IMPORTS_TABLE, T, table="pending_imports") + """
    INSERT INTO pending_imports (sha256, payload) SELECT sha256, payload FROM pending_imports_v1;
    DROP TABLE pending_imports_v1;
""" + PENDING_IMPORTS_INDEXES,
    # 5: file names are searchable words (a low-weight fifth column). FTS5 tables cannot
    # gain a column, so the index is recreated and refilled ("search_rebuild").
    """
    DROP TABLE meme_fts;
    CREATE VIRTUAL TABLE meme_fts USING fts5(
        user_text, description, ocr_text, tags, filename,
        tokenize = 'unicode61 remove_diacritics 2'
    );
""" + SEARCH_REBUILD,
    # 6: library care: tag colours, and paths removed from the library by the user.
    ddl(CARE, T),
]

SCHEMA_VERSION = len(MIGRATIONS)
