"""Scale-out end to end: PostgreSQL store, Redis queue, two worker processes, two ML services.

Every process is real and on 127.0.0.1. The first ML service is killed mid-run, so the
workers must fail over to the second; every meme must still be described exactly once.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess

import pytest

from memesearch.app import Core
from memesearch.config import Settings
from memesearch.library.scanner import scan_folder
from tests.service.helpers import (
    child_env,
    free_port,
    link_models,
    memesearch,
    start_redis,
    start_service,
    stop,
    wait_for,
    write_fake_models,
)

pytestmark = pytest.mark.slow
COMPLETED = re.compile(r"completed meme (\d+) of run (\d+)")


def test_two_workers_and_two_services_process_every_meme_once(tmp_path, postgres_url, shared_models_dir):
    from memesearch.library.samples import render_sample_memes

    folder = tmp_path / "memes"
    render_sample_memes(folder, count=12, seed=9)
    redis, queue_url = start_redis(tmp_path)
    processes: list[subprocess.Popen] = [redis]
    try:
        urls = []
        for name in ("ml1", "ml2"):
            home = tmp_path / name
            write_fake_models(home, delay=0.3)
            link_models(home, shared_models_dir)
            port = free_port()
            processes.append(start_service(home, port, tmp_path / f"{name}.log"))
            urls.append(f"http://127.0.0.1:{port}")
        shared = {"MEMESEARCH_DATABASE_URL": postgres_url, "MEMESEARCH_QUEUE_URL": queue_url,
                  "MEMESEARCH_ML_URLS": ",".join(urls), "MEMESEARCH_OCR_ENABLED": "false", "MEMESEARCH_JOB_LEASE_S": "5"}
        app_home = tmp_path / "app"
        write_fake_models(app_home, delay=0.3)
        core = Core(Settings(home=app_home, database_url=postgres_url, queue_url=queue_url, ml_urls=urls,
                             ocr_enabled=False, job_lease_s=5))
        scan_folder(core.store, core.store.add_folder(str(folder)), core.settings)
        ids = core.store.meme_ids()
        assert len(ids) == 12

        logs = [tmp_path / "worker1.log", tmp_path / "worker2.log"]
        for index, log in enumerate(logs):
            home = tmp_path / f"worker{index}"
            write_fake_models(home, delay=0.3)
            processes.append(subprocess.Popen(memesearch("-v", "worker", "--concurrency", "1"),
                                              env=child_env(home, **shared), stdout=subprocess.DEVNULL, stderr=log.open("w")))
        run = core.jobs.start("describe", model="fake-slow")
        wait_for(lambda: core.jobs.get(run.id).done >= 3, timeout=120, what="three memes described")
        first_service = processes[1]
        os.kill(first_service.pid, signal.SIGKILL)  # the preferred service dies mid-run
        first_service.wait(10)
        final = wait_for(lambda: (lambda r: r if not r.active else None)(core.jobs.get(run.id)),
                         timeout=180, what="the run to finish on the second service")
        assert (final.state, final.done, final.failed) == ("done", 12, 0)

        memes = core.store.get_memes(ids)
        assert all(len(m.descriptions) == 1 and m.descriptions[0].model_id == "fake-slow" for m in memes)
        completed = [int(m.group(1)) for log in logs for m in COMPLETED.finditer(log.read_text())]
        assert sorted(completed) == sorted(ids), "every meme completed exactly once across both workers"
        assert all(COMPLETED.search(log.read_text()) for log in logs), "both workers took part"
        core.close()
    finally:
        for process in reversed(processes):
            stop(process)
