"""Web login sessions, kept server-side so that logging out (or changing the password) ends them.

They live in a small SQLite file of their own in the data dir (``web-sessions.db``), next
to the key that signs the cookies, rather than in the library database:

- sessions are state of the web server, not of the library: ``export``, ``db copy`` and
  backups of the library must not carry live logins to another machine;
- the file works the same whichever store holds the library (SQLite or PostgreSQL), and
  web processes of one host share it (WAL);
- its table never needs the library's schema migrations.

Only a SHA-256 of each session id is stored, so the file alone opens no session. A
fingerprint of the password (scrypt, salted with the signing key) is kept too: when the
server starts with another password, every session ends.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import secrets
import sqlite3
import threading
import time
from pathlib import Path

log = logging.getLogger(__name__)

SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (id_hash TEXT PRIMARY KEY, created REAL NOT NULL, expires REAL NOT NULL);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


def password_fingerprint(password: str, key: bytes) -> str:
    """A slow, keyed hash of the password: tells a changed password apart without storing it."""
    return hashlib.scrypt(password.encode(), salt=key, n=2**14, r=8, p=1, dklen=32).hex()


def _hash(session_id: str) -> str:
    return hashlib.sha256(session_id.encode()).hexdigest()


class SessionStore:
    def __init__(self, path: Path, fingerprint: str, max_age_s: float) -> None:
        self.max_age_s = max_age_s
        self._lock = threading.Lock()
        self._db = self._open(path)
        with self._lock, self._db:
            self._db.executescript(SCHEMA)
            row = self._db.execute("SELECT value FROM meta WHERE key = 'password'").fetchone()
            if row is None or not hmac.compare_digest(row[0], fingerprint):
                ended = self._db.execute("DELETE FROM sessions").rowcount
                if row is not None and ended:
                    log.warning("the password changed: %d web session(s) ended", ended)
                self._db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES ('password', ?)", (fingerprint,))

    @staticmethod
    def _open(path: Path) -> sqlite3.Connection:
        from memesearch.readonly import is_read_only

        if is_read_only(path.parent):  # honoured even for root, who could write past the mode bits
            log.warning("%s is read-only: web sessions are kept in memory only", path.parent)
            return sqlite3.connect(":memory:", check_same_thread=False)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            db = sqlite3.connect(path, check_same_thread=False, isolation_level=None, timeout=10)
            db.execute("PRAGMA journal_mode=WAL")
            db.isolation_level = ""  # `with db:` commits
            return db
        except (OSError, sqlite3.Error) as exc:
            # A read-only data dir: logins still work, but end when the server stops.
            log.warning("cannot write %s (%s): web sessions are kept in memory only", path, exc)
            return sqlite3.connect(":memory:", check_same_thread=False)

    def create(self) -> str:
        """A new session; returns its id (only its hash is stored)."""
        session_id = secrets.token_urlsafe(32)
        now = time.time()
        with self._lock, self._db:
            self._db.execute("DELETE FROM sessions WHERE expires < ?", (now,))
            self._db.execute("INSERT INTO sessions (id_hash, created, expires) VALUES (?, ?, ?)",
                             (_hash(session_id), now, now + self.max_age_s))
        return session_id

    def is_active(self, session_id: str) -> bool:
        with self._lock:
            row = self._db.execute("SELECT expires FROM sessions WHERE id_hash = ?", (_hash(session_id),)).fetchone()
        return row is not None and row[0] > time.time()

    def end(self, session_id: str) -> None:
        with self._lock, self._db:
            self._db.execute("DELETE FROM sessions WHERE id_hash = ?", (_hash(session_id),))

    def count(self) -> int:
        with self._lock:
            return self._db.execute("SELECT count(*) FROM sessions WHERE expires > ?", (time.time(),)).fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
