"""SQLite schema as an ordered list of migrations.

``PRAGMA user_version`` holds how many migrations have run. Migrations are only
ever appended: editing an old one would leave existing databases behind.
"""

from __future__ import annotations

MIGRATIONS: list[str] = [
    # 1: the library, its texts, tags, vectors and per-stage status.
    """
    CREATE TABLE folders (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL UNIQUE,
        added_at REAL NOT NULL,
        auto_scan_minutes INTEGER NOT NULL DEFAULT 0,
        last_scan_at REAL,
        last_scan_json TEXT
    );

    CREATE TABLE memes (
        id INTEGER PRIMARY KEY,
        folder_id INTEGER REFERENCES folders(id) ON DELETE SET NULL,
        path TEXT NOT NULL UNIQUE,
        sha256 TEXT,
        phash TEXT,
        size INTEGER NOT NULL DEFAULT 0,
        mtime REAL NOT NULL DEFAULT 0,
        width INTEGER,
        height INTEGER,
        format TEXT,
        frames INTEGER,
        status TEXT NOT NULL DEFAULT 'ok' CHECK (status IN ('ok', 'missing', 'error')),
        error TEXT,
        duplicate_of INTEGER REFERENCES memes(id) ON DELETE SET NULL,
        ocr_text TEXT NOT NULL DEFAULT '',
        ocr_engine TEXT,
        user_description TEXT NOT NULL DEFAULT '',
        added_at REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    CREATE INDEX memes_sha256 ON memes(sha256);
    CREATE INDEX memes_folder ON memes(folder_id);
    CREATE INDEX memes_status ON memes(status);

    -- One generated description per (meme, model): several models can coexist.
    CREATE TABLE descriptions (
        meme_id INTEGER NOT NULL REFERENCES memes(id) ON DELETE CASCADE,
        model_id TEXT NOT NULL,
        text TEXT NOT NULL,
        backend TEXT NOT NULL DEFAULT '',
        dtype TEXT NOT NULL DEFAULT '',
        revision TEXT NOT NULL DEFAULT '',
        ms REAL,
        created_at REAL NOT NULL,
        PRIMARY KEY (meme_id, model_id)
    );

    CREATE TABLE tags (
        id INTEGER PRIMARY KEY,
        name TEXT NOT NULL UNIQUE COLLATE NOCASE
    );
    CREATE TABLE meme_tags (
        meme_id INTEGER NOT NULL REFERENCES memes(id) ON DELETE CASCADE,
        tag_id INTEGER NOT NULL REFERENCES tags(id) ON DELETE CASCADE,
        PRIMARY KEY (meme_id, tag_id)
    );

    -- A vector always names the model that made it and the hash of the text it
    -- came from: unchanged text is never re-embedded, models never mix.
    CREATE TABLE vectors (
        meme_id INTEGER NOT NULL REFERENCES memes(id) ON DELETE CASCADE,
        model_id TEXT NOT NULL,
        text_hash TEXT NOT NULL,
        dim INTEGER NOT NULL,
        vector BLOB NOT NULL,
        PRIMARY KEY (meme_id, model_id)
    );
    CREATE INDEX vectors_model ON vectors(model_id);

    -- Durable per-stage status (ocr, caption, embed): what is left to do survives crashes.
    CREATE TABLE stages (
        meme_id INTEGER NOT NULL REFERENCES memes(id) ON DELETE CASCADE,
        stage TEXT NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed')),
        attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        lease_until REAL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (meme_id, stage)
    );
    CREATE INDEX stages_status ON stages(stage, status);

    -- Metadata imported for files not (yet) in the library, keyed by content hash;
    -- applied when a file with that hash is indexed, so an import never loses data.
    CREATE TABLE pending_imports (
        sha256 TEXT PRIMARY KEY,
        payload TEXT NOT NULL
    );

    CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
    INSERT INTO meta (key, value) VALUES ('vectors_version', '0');

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
    """
    CREATE TABLE runs (
        id INTEGER PRIMARY KEY,
        kind TEXT NOT NULL,
        model TEXT,
        state TEXT NOT NULL CHECK (state IN ('queued', 'running', 'done', 'cancelled', 'failed')),
        params TEXT NOT NULL DEFAULT '{}',
        error TEXT,
        created_at REAL NOT NULL,
        started_at REAL,
        finished_at REAL,
        kicked_at REAL
    );

    -- One row per meme of a run. 'running' rows hold a lease: a worker killed
    -- mid-meme leaves an expired lease that the reaper puts back to 'queued'.
    -- A 'queued' row with lease_until in the future waits for a retry (backoff).
    CREATE TABLE run_items (
        run_id INTEGER NOT NULL REFERENCES runs(id) ON DELETE CASCADE,
        meme_id INTEGER NOT NULL,
        status TEXT NOT NULL CHECK (status IN ('queued', 'running', 'done', 'failed', 'cancelled')),
        attempts INTEGER NOT NULL DEFAULT 0,
        error TEXT,
        lease_until REAL,
        finished_at REAL,
        PRIMARY KEY (run_id, meme_id)
    );
    CREATE INDEX run_items_status ON run_items(status, lease_until);
    """,
    # 3: template groups (memesearch/templates): each meme's picture features and the
    # group of memes sharing its picture; OCR caption boxes, which the features mask.
    """
    ALTER TABLE memes ADD COLUMN ocr_boxes TEXT;
    CREATE TABLE template_groups (
        id INTEGER PRIMARY KEY,
        name TEXT,
        created_at REAL NOT NULL
    );
    CREATE TABLE template_features (
        meme_id INTEGER PRIMARY KEY REFERENCES memes(id) ON DELETE CASCADE,
        version INTEGER NOT NULL,
        vector BLOB NOT NULL,
        points BLOB NOT NULL,
        descriptors BLOB NOT NULL,
        group_id INTEGER REFERENCES template_groups(id) ON DELETE SET NULL,
        grouped INTEGER NOT NULL DEFAULT 0
    );
    CREATE INDEX template_features_group ON template_features(group_id);
    CREATE INDEX template_features_grouped ON template_features(grouped);
    """,
    # 4: pending import records keyed by path (registered folder's name + relative path, and the
    # absolute path), with the content hash only to follow moved files. One row per record, so
    # byte-identical files keep their own records; old hash-keyed rows become hash-only records.
    """
    ALTER TABLE pending_imports RENAME TO pending_imports_v1;
    CREATE TABLE pending_imports (
        id INTEGER PRIMARY KEY,
        path TEXT NOT NULL DEFAULT '',
        folder_name TEXT NOT NULL DEFAULT '',
        relative TEXT NOT NULL DEFAULT '',
        sha256 TEXT,
        payload TEXT NOT NULL
    );
    INSERT INTO pending_imports (sha256, payload) SELECT sha256, payload FROM pending_imports_v1;
    DROP TABLE pending_imports_v1;
    CREATE INDEX pending_imports_path ON pending_imports(path);
    CREATE INDEX pending_imports_relative ON pending_imports(relative);
    CREATE INDEX pending_imports_sha256 ON pending_imports(sha256);
    """,
    # 5: file names are searchable words (a low-weight fifth column). FTS5 tables cannot
    # gain a column, so the index is recreated; the store refills it (SqliteStore._migrate,
    # "search_rebuild") because splitting names into words is Python (text.filename_words).
    """
    DROP TABLE meme_fts;
    CREATE VIRTUAL TABLE meme_fts USING fts5(
        user_text, description, ocr_text, tags, filename,
        tokenize = 'unicode61 remove_diacritics 2'
    );
    INSERT INTO meta (key, value) VALUES ('search_rebuild', '1')
        ON CONFLICT (key) DO UPDATE SET value = '1';
    """,
    # 6: library care: tag colours, and paths removed from the library by the user (a rescan
    # skips them; the file itself is never touched).
    """
    ALTER TABLE tags ADD COLUMN color TEXT;
    CREATE TABLE excluded_paths (
        path TEXT PRIMARY KEY,
        sha256 TEXT,
        removed_at REAL NOT NULL
    );
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)
