"""Real worker processes killed with SIGKILL mid-run (SQLite and Redis queues), and a service outage."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import time
from pathlib import Path

import pytest

from memesearch.app import Core
from memesearch.config import Settings
from memesearch.jobs.worker import start_in_process
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

COMPLETED = re.compile(r"completed meme (\d+) of run (\d+)")


@pytest.fixture
def library(tmp_path, shared_models_dir):
    from memesearch.library.samples import render_sample_memes

    folder = tmp_path / "memes"
    render_sample_memes(folder, count=10, seed=5)
    home = tmp_path / "data"
    write_fake_models(home, delay=0.4)
    link_models(home, shared_models_dir)
    return home, folder


@pytest.fixture(params=["sqlite", "redis"])
def queue_url(request, tmp_path):
    if request.param == "sqlite":
        yield ""
        return
    proc, url = start_redis(tmp_path)
    yield url
    stop(proc)


def start_worker(home: Path, queue_url: str, log: Path) -> subprocess.Popen:
    env = child_env(home, MEMESEARCH_QUEUE_URL=queue_url, MEMESEARCH_JOB_LEASE_S="2", MEMESEARCH_OCR_ENABLED="false")
    return subprocess.Popen(memesearch("-v", "worker", "--concurrency", "2"), env=env,
                            stdout=subprocess.DEVNULL, stderr=log.open("w"))


def completions(*logs: Path) -> list[int]:
    return [int(m.group(1)) for log in logs for m in COMPLETED.finditer(log.read_text())]


# fake-batched describes 4 memes per model call (after a first meme alone, which loads the model):
# the kill comes while whole batches are in hand.
@pytest.mark.parametrize(("model", "kill_after"), [("fake-slow", 3), ("fake-batched", 2)])
def test_kill_9_of_a_worker_loses_nothing_and_redoes_nothing(library, queue_url, tmp_path, model, kill_after):
    home, folder = library
    core = Core(Settings(home=home, queue_url=queue_url, ocr_enabled=False, job_lease_s=2))
    folder_row = core.store.add_folder(str(folder))
    scan_folder(core.store, folder_row, core.settings)
    ids = core.store.meme_ids()
    run = core.jobs.start("describe", model=model)
    assert run.total == len(ids) == 10

    first_log, second_log = tmp_path / "worker1.log", tmp_path / "worker2.log"
    worker = start_worker(home, queue_url, first_log)
    try:
        wait_for(lambda: core.jobs.get(run.id).done >= kill_after, timeout=90, what=f"{kill_after} memes done")
    finally:
        os.kill(worker.pid, signal.SIGKILL)
        worker.wait(10)
    at_kill = core.jobs.get(run.id)
    assert at_kill.active and at_kill.done < at_kill.total  # really killed mid-run
    finished_before = {m.id: m.descriptions[0].created_at for m in core.store.get_memes(ids) if m.descriptions}

    worker = start_worker(home, queue_url, second_log)
    try:
        final = wait_for(lambda: (lambda r: r if not r.active else None)(core.jobs.get(run.id)),
                         timeout=90, what="the run to finish after the restart")
    finally:
        stop(worker)
    assert (final.state, final.done, final.failed) == ("done", len(ids), 0)
    memes = core.store.get_memes(ids)
    assert all(len(m.descriptions) == 1 and m.descriptions[0].model_id == model for m in memes)
    # Nothing that had finished before the kill was generated again ...
    for meme in memes:
        if meme.id in finished_before:
            assert meme.descriptions[0].created_at == finished_before[meme.id]
    # ... and every meme was completed exactly once across both worker lifetimes: the ones the
    # database had finished at the kill (the killed worker may die between committing a meme and
    # logging it), plus those the restarted worker completed, with no id twice. A meme whose
    # description was committed but whose run item was not yet closed at the kill is closed by
    # the restarted worker without being described again (created_at unchanged, checked above).
    again = completions(second_log)
    assert len(again) == len(set(again)), second_log.read_text()[-3000:]
    done = list(finished_before) + [meme_id for meme_id in again if meme_id not in finished_before]
    assert sorted(done) == sorted(ids), (first_log.read_text()[-3000:], second_log.read_text()[-3000:])
    assert completions(second_log), "the restarted worker finished the run"
    core.close()


def test_jobs_wait_while_the_service_is_down_and_resume_when_it_returns(library, tmp_path):
    home, folder = library
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app_home = tmp_path / "app"
    write_fake_models(app_home, delay=0.0)
    core = Core(Settings(home=app_home, ml_urls=[url], ocr_enabled=False, job_lease_s=5))
    folder_row = core.store.add_folder(str(folder))
    scan_folder(core.store, folder_row, core.settings)
    ids = core.store.meme_ids()[:3]
    run = core.jobs.start("describe", model="fake", meme_ids=ids)
    handle = start_in_process(core, concurrency=1)
    service = None
    try:
        # Down: memes go back to the queue with backoff instead of failing.
        wait_for(lambda: core.store.item_attempts(run.id, ids[0]) >= 1, timeout=60, what="a failed attempt")
        waiting = core.jobs.get(run.id)
        assert waiting.active and waiting.failed == 0 and waiting.done == 0
        service = start_service(home, port, tmp_path / "service.log")
        final = wait_for(lambda: (lambda r: r if not r.active else None)(core.jobs.get(run.id)),
                         timeout=90, what="the run to resume")
    finally:
        handle.stop()
        if service is not None:
            stop(service)
    assert (final.state, final.done, final.failed) == ("done", 3, 0)
    assert all(m.descriptions[0].backend == "fake" for m in core.store.get_memes(ids))
    core.close()
