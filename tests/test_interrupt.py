"""Ctrl-C during `memesearch index` leaves a consistent database and the next run resumes."""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

pytestmark = pytest.mark.slow


def _ocr_done(db) -> int:
    try:
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=5)
        try:
            return conn.execute("SELECT COUNT(*) FROM memes WHERE ocr_engine IS NOT NULL").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.OperationalError:
        return 0


def test_sigint_mid_index_then_resume(tmp_path, corpus, shared_models_dir):
    folder, samples = corpus
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").symlink_to(shared_models_dir, target_is_directory=True)
    base = [sys.executable, "-m", "memesearch", "--data-dir", str(home)]
    subprocess.run([*base, "add", str(folder)], check=True, capture_output=True, timeout=60)

    # SIGINT back to its default in the child: a shell running this suite in the background
    # (`.ci/run &`) starts it with SIGINT ignored, and Python keeps an inherited SIG_IGN.
    process = subprocess.Popen([*base, "index", "--json"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 120
    while _ocr_done(home / "memesearch.db") < 3 and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert process.poll() is None, (
        f"index ended before it could be interrupted ({_ocr_done(home / 'memesearch.db')} memes read were seen): "
        f"{process.communicate()[1][-2000:]}")
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "resume" in stderr

    conn = sqlite3.connect(home / "memesearch.db")
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    done_before = conn.execute("SELECT COUNT(*) FROM memes WHERE ocr_engine IS NOT NULL").fetchone()[0]
    conn.close()
    assert 3 <= done_before < len(samples)

    finished = subprocess.run([*base, "index", "--json"], capture_output=True, text=True, timeout=300)
    assert finished.returncode == 0, finished.stderr
    summary = json.loads(finished.stdout)
    assert summary["ocr"]["done"] == len(samples) - done_before  # nothing redone
    assert summary["counts"]["ok"] == len(samples) and summary["counts"]["vectors"] == len(samples)
