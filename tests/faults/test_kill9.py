"""kill -9 of the worker and of the ML service at (seeded) random points of a bulk index run.

The run scans, reads text (OCR), describes and embeds 12 memes, every model call going
through a real ML service process. After the kills and restarts: the run completes, the
database passes its integrity check (SQLite and PostgreSQL), and every meme has exactly one OCR text, one
description and one vector.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
from pathlib import Path

import pytest

from memesearch.app import Core
from memesearch.config import Settings
from tests.faults.helpers import assert_store_consistent
from tests.reliability import tried
from tests.service.helpers import (
    child_env,
    free_port,
    link_models,
    memesearch,
    start_service,
    stop,
    wait_for,
    write_fake_models,
)

MEMES = 12
pytestmark = pytest.mark.timeout(300)


def start_worker(home: Path, url: str, log: Path, database_url: str) -> subprocess.Popen:
    env = child_env(home, MEMESEARCH_ML_URLS=url, MEMESEARCH_JOB_LEASE_S="2", MEMESEARCH_DATABASE_URL=database_url)
    return subprocess.Popen(memesearch("-v", "worker", "--concurrency", "2"), env=env,
                            stdout=subprocess.DEVNULL, stderr=log.open("a"))


def kill9(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request) -> str:
    return "" if request.param == "sqlite" else request.getfixturevalue("postgres_url")


@pytest.mark.parametrize("seed", [1])
def test_kill_9_of_worker_and_service_mid_run_loses_and_duplicates_nothing(tmp_path, shared_models_dir, seed,
                                                                           database_url):
    from memesearch.library.samples import render_sample_memes

    rng = random.Random(seed)
    folder = tmp_path / "memes"
    render_sample_memes(folder, count=MEMES, seed=seed)
    service_home, app_home = tmp_path / "service", tmp_path / "app"
    for home in (service_home, app_home):
        write_fake_models(home, delay=0.4)
        link_models(home, shared_models_dir)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    settings = Settings(home=app_home, ml_urls=[url], job_lease_s=2, database_url=database_url)
    core = Core(settings)
    run = core.jobs.start("index", model="fake-slow", folder_id=core.store.add_folder(str(folder)).id)
    worker_log, service_log = tmp_path / "worker.log", tmp_path / "service.log"

    service = start_service(service_home, port, service_log)
    worker = start_worker(app_home, url, worker_log, database_url)
    # Three kills at random progress points: worker, service, worker again.
    points = sorted(rng.sample(range(1, MEMES - 1), 3))
    kills = []
    try:
        for point, victim in zip(points, ["worker", "service", "worker"], strict=True):
            try:
                wait_for(lambda p=point: core.jobs.get(run.id).done >= p, timeout=120, what=f"{point} memes done")
            except AssertionError as exc:
                raise AssertionError(f"{exc}; run: {core.jobs.get(run.id).as_dict()}\n"
                                     f"worker log: {worker_log.read_text()[-6000:]}") from None
            kills.append((victim, core.jobs.get(run.id).done))
            if victim == "worker":
                kill9(worker)
                worker = start_worker(app_home, url, worker_log, database_url)
            else:
                kill9(service)
                service = start_service(service_home, port, service_log)
        final = wait_for(lambda: (lambda r: r if not r.active else None)(core.jobs.get(run.id)),
                         timeout=180, what="the run to finish after the kills")
    finally:
        stop(worker)
        stop(service)
    assert all(done < MEMES for _, done in kills), f"every kill landed mid-run: {kills}"
    tried(len(kills))
    assert (final.state, final.total, final.done, final.failed) == ("done", MEMES, MEMES, 0), \
        (final.as_dict(), worker_log.read_text()[-3000:])
    core.close()
    assert_store_consistent(settings, MEMES, caption_model="fake-slow")
