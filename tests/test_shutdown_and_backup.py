"""Clean shutdown leaves a self-contained database, and `memesearch backup` copies a live library (issue 11).

SQLite keeps recent commits in ``memesearch.db-wal`` until a checkpoint; someone who copies only
``memesearch.db`` after stopping the app must still get every change.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest
from typer.testing import CliRunner

from memesearch.cli import app
from memesearch.store.backup import backup_library
from memesearch.store.sqlite import SqliteStore

runner = CliRunner()
TOKEN = "shutdown-token-0123456789"
REPO = Path(__file__).resolve().parents[1]


def cli(home: Path, *args: str):
    return runner.invoke(app, ["--data-dir", str(home), *args], catch_exceptions=False)


def only_the_db_file(home: Path, tmp_path: Path) -> sqlite3.Connection:
    """What a person gets by copying memesearch.db alone (no -wal, no -shm)."""
    copy = tmp_path / "copied" / "memesearch.db"
    copy.parent.mkdir()
    shutil.copyfile(home / "memesearch.db", copy)
    return sqlite3.connect(copy)


def wal_bytes(home: Path) -> int:
    wal = home / "memesearch.db-wal"
    return wal.stat().st_size if wal.exists() else 0


def add_folder(home: Path, folder: Path) -> None:
    """`memesearch add` in its own process: no connection of the test process stays open."""
    result = subprocess.run([sys.executable, "-m", "memesearch", "--data-dir", str(home), "add", str(folder)],
                            cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start(home: Path, *args: str, **env) -> subprocess.Popen:
    """The command in the background; its output goes to ``home/../<command>.log``."""
    log = (home.parent / f"{args[0]}.log").open("w")
    return subprocess.Popen([sys.executable, "-m", "memesearch", "--data-dir", str(home), *args], cwd=REPO,
                            env={**os.environ, **env}, stdout=log, stderr=subprocess.STDOUT, text=True)


def output(home: Path, command: str) -> str:
    return (home.parent / f"{command}.log").read_text()


def wait_until(predicate, what: str, deadline_s: float = 60.0) -> None:
    """Polls ``predicate``; the deadline only bounds a hung test, it asserts nothing about speed."""
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        if predicate():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what}")


def test_normal_cli_exit_checkpoints_the_wal(tmp_path):
    home = tmp_path / "data"
    for args in (("add", str(tmp_path)), ("tag", "create", "latest")):
        result = subprocess.run([sys.executable, "-m", "memesearch", "--data-dir", str(home), *args],
                                cwd=REPO, capture_output=True, text=True, timeout=120)
        assert result.returncode == 0, result.stderr
        assert wal_bytes(home) == 0
    assert only_the_db_file(home, tmp_path).execute("SELECT name FROM tags").fetchall() == [("latest",)]


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code < 500
    except httpx.HTTPError:
        return False


@pytest.mark.parametrize("stop", [signal.SIGTERM, signal.SIGINT])
def test_stopping_serve_checkpoints_the_wal(tmp_path, stop):
    home = tmp_path / "data"
    add_folder(home, tmp_path)
    port = free_port()
    server = start(home, "serve", "--port", str(port), "--workers", "0", MEMESEARCH_API_TOKEN=TOKEN)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_until(lambda: _http_ok(f"{base}/api/folders"), "the server to answer")
        response = httpx.patch(f"{base}/api/folders/1", json={"auto_scan_minutes": 42},
                               headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        assert response.status_code == 200, response.text
        assert wal_bytes(home) > 0  # the change sits in the WAL while the server runs
        server.send_signal(stop)
        server.wait(timeout=60)
    finally:
        if server.poll() is None:
            server.kill()
    # uvicorn re-raises SIGTERM after its graceful shutdown; SIGINT ends as Ctrl-C does.
    assert server.returncode in (0, -stop, 128 + stop, 130), output(home, "serve")
    assert "Traceback" not in output(home, "serve")
    assert wal_bytes(home) == 0
    rows = only_the_db_file(home, tmp_path).execute("SELECT auto_scan_minutes FROM folders").fetchall()
    assert rows == [(42,)]


def test_stopping_a_worker_checkpoints_the_wal(tmp_path):
    home = tmp_path / "data"
    add_folder(home, tmp_path)
    worker = start(home, "worker")
    try:
        wait_until(lambda: "Ctrl-C stops" in output(home, "worker"), "the worker to start")
        store = SqliteStore(home / "memesearch.db")
        store.set_folder_auto_scan(1, 7)
        store._conn.execute("PRAGMA wal_autocheckpoint=0")
        store.set_folder_auto_scan(1, 9)
        # Leave the change in the WAL as a crashed writer would: drop the connection without closing.
        from memesearch.store import sqlite as sqlite_module

        sqlite_module._OPEN_STORES.discard(store)
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=60)
    finally:
        if worker.poll() is None:
            worker.kill()
    assert worker.returncode == 0, output(home, "worker")
    rows = only_the_db_file(home, tmp_path).execute("SELECT auto_scan_minutes FROM folders").fetchall()
    store.close()
    assert rows == [(9,)]


def test_backup_while_a_writer_is_busy(tmp_path):
    database = tmp_path / "data" / "memesearch.db"
    reader = SqliteStore(database)
    committed = [0]
    stop = threading.Event()

    def write_forever() -> None:
        writer = SqliteStore(database)
        while not stop.is_set():
            writer.add_folder(f"/memes/{committed[0]}")
            committed[0] += 1
        writer.close()

    thread = threading.Thread(target=write_forever)
    thread.start()
    try:
        wait_until(lambda: committed[0] > 50, "the writer to get going")
        for attempt in range(3):
            before = committed[0]
            result = backup_library(reader, tmp_path / f"backup-{attempt}.db")
            after = committed[0]
            copy = sqlite3.connect(result["path"])
            assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
            assert before <= copy.execute("SELECT count(*) FROM folders").fetchone()[0] <= after + 1
            assert not Path(result["path"] + "-wal").exists()
            copy.close()
        # The CLI, from another process, while the writer goes on.
        result = subprocess.run([sys.executable, "-m", "memesearch", "--data-dir", str(database.parent), "backup",
                                 str(tmp_path / "cli.db"), "--json"], cwd=REPO, capture_output=True, text=True,
                                timeout=120)
        assert result.returncode == 0, result.stderr
        assert json.loads(result.stdout)["path"] == str(tmp_path / "cli.db")
    finally:
        stop.set()
        thread.join()
        reader.close()
    copy = sqlite3.connect(tmp_path / "cli.db")
    assert copy.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    assert copy.execute("SELECT count(*) FROM folders").fetchone()[0] > 50


def test_backup_refuses_the_live_database_and_existing_files(tmp_path):
    home = tmp_path / "data"
    assert cli(home, "add", str(tmp_path)).exit_code == 0
    for target in (home / "memesearch.db", home / "memesearch.db-wal"):
        result = cli(home, "backup", str(target))
        assert result.exit_code == 2 and "is the live database" in result.stderr
    existing = tmp_path / "old.db"
    existing.write_bytes(b"keep me")
    result = cli(home, "backup", str(existing))
    assert result.exit_code == 2 and "already exists" in result.stderr and existing.read_bytes() == b"keep me"
    assert cli(home, "backup", str(existing), "--force").exit_code == 0
    assert sqlite3.connect(existing).execute("SELECT count(*) FROM folders").fetchone()[0] == 1


def test_backup_of_a_postgres_library_points_to_pg_dump(tmp_path):
    result = runner.invoke(app, ["--data-dir", str(tmp_path), "backup", str(tmp_path / "x.db")],
                           env={"MEMESEARCH_DATABASE_URL": "postgresql://user@127.0.0.1:1/memes"})
    assert result.exit_code == 2
    assert "pg_dump" in result.stderr and "PostgreSQL" in result.stderr
