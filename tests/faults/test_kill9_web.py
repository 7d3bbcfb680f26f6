"""kill -9 of the web process (`memesearch serve`, which runs the job worker in-process) in the
middle of a bulk describe run started through the API; a restarted server finishes the run."""

from __future__ import annotations

import os
import random
import signal
import subprocess
from pathlib import Path

import httpx
import pytest

from memesearch.config import Settings
from tests.conftest import make_core
from tests.faults.helpers import assert_store_consistent
from tests.reliability import tried
from tests.service.helpers import child_env, free_port, link_models, memesearch, stop, wait_for, write_fake_models

MEMES = 10
pytestmark = pytest.mark.timeout(300)


def start_server(home: Path, port: int, log: Path, database_url: str) -> tuple[subprocess.Popen, httpx.Client]:
    env = child_env(home, MEMESEARCH_JOB_LEASE_S="2", MEMESEARCH_DATABASE_URL=database_url)
    proc = subprocess.Popen(memesearch("serve", "--port", str(port)), env=env, stdout=subprocess.DEVNULL,
                            stderr=log.open("a"))
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=10)

    def healthy():
        if proc.poll() is not None:
            raise AssertionError(f"serve exited: {log.read_text()[-2000:]}")
        try:
            return client.get("/healthz").status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(healthy, timeout=60, what="the web server")
    client.headers["X-CSRF-Token"] = client.cookies["ms_csrf"]
    return proc, client


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request) -> str:
    return "" if request.param == "sqlite" else request.getfixturevalue("postgres_url")


def test_kill_9_of_the_web_process_mid_run(tmp_path, shared_models_dir, database_url):
    from memesearch.library.indexing import run_index
    from memesearch.library.samples import render_sample_memes

    folder = tmp_path / "memes"
    render_sample_memes(folder, count=MEMES, seed=41)
    home = tmp_path / "data"
    write_fake_models(home, delay=0.5)
    link_models(home, shared_models_dir)
    core = make_core(home, shared_models_dir, threads=1, database_url=database_url)
    core.store.add_folder(str(folder))
    run_index(core)
    core.close()

    port, log = free_port(), tmp_path / "serve.log"
    server, client = start_server(home, port, log, database_url)
    try:
        run = client.post("/api/jobs", json={"kind": "describe", "model": "fake-slow"}).json()
        assert run["total"] == MEMES, run
        kill_at = random.Random(41).randint(2, MEMES - 3)
        wait_for(lambda: client.get(f"/api/jobs/{run['id']}").json()["done"] >= kill_at, timeout=120,
                 what=f"{kill_at} memes described")
        os.kill(server.pid, signal.SIGKILL)
        server.wait(10)
        server, client = start_server(home, port, log, database_url)
        at_restart = client.get(f"/api/jobs/{run['id']}").json()
        assert at_restart["done"] < MEMES, "the kill landed mid-run"
        final = wait_for(lambda: (lambda r: r if r["state"] not in ("queued", "running") else None)(
            client.get(f"/api/jobs/{run['id']}").json()), timeout=120, what="the run to finish after restart")
    finally:
        stop(server)
    tried()
    assert (final["state"], final["done"], final["failed"]) == ("done", MEMES, 0), (final, log.read_text()[-2000:])
    assert_store_consistent(Settings(home=home, database_url=database_url), MEMES, caption_model="fake-slow")
