"""`memesearch backup FILE`: a consistent copy of a SQLite library while the app keeps running.

SQLite's online backup API copies the database as one read snapshot, so writers in this or
other processes go on meanwhile and the copy holds every committed change (the WAL included),
unlike copying ``memesearch.db`` by hand. The copy is written beside the target and renamed
into place, so an interrupted backup never leaves half a file under the chosen name.
"""

from __future__ import annotations

import os
import sqlite3
import tempfile
from pathlib import Path

from memesearch.errors import ConfigError, InvalidInputError

PG_DUMP_HINT = "pg_dump --format=custom --file=memesearch.dump \"$MEMESEARCH_DATABASE_URL\" (see docs/DEPLOY.md)"


def _live_files(database: Path) -> set[Path]:
    return {Path(f"{database}{suffix}").resolve() for suffix in ("", "-wal", "-shm", "-journal")}


def postgres_refusal() -> ConfigError:
    return ConfigError(
        "memesearch backup copies SQLite libraries; this library is in PostgreSQL, so back it up with pg_dump",
        hint=PG_DUMP_HINT,
    )


def backup_library(store, target: Path, *, overwrite: bool = False) -> dict:
    """Copy the library behind ``store`` to ``target``; returns {"path", "bytes", "memes"}."""
    if store.kind != "sqlite":
        raise postgres_refusal()
    target = target.expanduser()
    if target.resolve() in _live_files(store.path.resolve()):
        raise InvalidInputError(f"{target} is the live database; choose another file for the backup")
    if target.is_dir():
        raise InvalidInputError(f"{target} is a folder; give a file name such as {target / 'memesearch-backup.db'}")
    if target.exists() and not overwrite:
        raise InvalidInputError(f"{target} already exists", hint="choose a new file name, or pass --force to replace it")
    if not target.parent.is_dir():
        raise InvalidInputError(f"the folder {target.parent} does not exist")
    try:
        handle, partial = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".partial")
    except OSError as exc:
        raise InvalidInputError(f"cannot write in {target.parent}: {exc.strerror or exc}") from exc
    os.close(handle)
    try:
        store.backup_to(Path(partial))
        memes = _verified_count(Path(partial))
        os.replace(partial, target)
    except sqlite3.Error as exc:
        raise InvalidInputError(f"the backup to {target} failed: {exc}") from exc
    except OSError as exc:
        raise InvalidInputError(f"the backup to {target} failed: {exc.strerror or exc}") from exc
    finally:
        Path(partial).unlink(missing_ok=True)
    return {"path": str(target), "bytes": target.stat().st_size, "memes": memes}


def _verified_count(path: Path) -> int:
    """The copy passes SQLite's integrity check; returns how many memes it holds."""
    conn = sqlite3.connect(path)
    try:
        # The copy is a single self-contained file: no WAL beside it.
        conn.execute("PRAGMA journal_mode=DELETE")
        if conn.execute("PRAGMA integrity_check").fetchone()[0] != "ok":
            raise sqlite3.DatabaseError("the copy failed SQLite's integrity check")
        return conn.execute("SELECT count(*) FROM memes").fetchone()[0]
    finally:
        conn.close()
