"""Bulk runs in-process: progress, failures (permanent and transient), retry, cancel, leases, auto-rescan."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from memesearch.app import Core
from memesearch.config import Settings
from memesearch.errors import InvalidInputError, NotFoundError
from memesearch.jobs import reaper
from memesearch.jobs.worker import start_in_process
from memesearch.library.scanner import scan_folder
from memesearch.ml.fake import FakeEmbedder
from tests.service.helpers import wait_for, write_fake_models


@pytest.fixture
def library(tmp_path):
    from memesearch.library.samples import render_sample_memes

    folder = tmp_path / "memes"
    render_sample_memes(folder, count=6, seed=3)
    home = tmp_path / "data"
    write_fake_models(home, delay=0.3)
    core = Core(Settings(home=home, ocr_enabled=False, job_lease_s=2, job_max_attempts=3))
    core.__dict__["embedder"] = FakeEmbedder()  # the model boundary; everything above it is real
    core.store.add_folder(str(folder))
    yield core, folder
    core.close()


@pytest.fixture
def worker(library):
    core, _ = library
    handle = start_in_process(core, concurrency=2)
    yield handle
    handle.stop()


def scan(core: Core) -> list[int]:
    for folder in core.store.list_folders():
        scan_folder(core.store, folder, core.settings)
    return core.store.meme_ids()


def finished(core: Core, run_id: int):
    run = core.jobs.get(run_id)
    return run if not run.active else None


def test_describe_run_reports_progress_and_completes(library, worker):
    core, _ = library
    ids = scan(core)
    run = core.jobs.start("describe", model="fake")
    assert (run.kind, run.model, run.total, run.state) == ("describe", "fake", len(ids), "queued")
    run = wait_for(lambda: finished(core, run.id), what="the run to finish")
    assert (run.state, run.done, run.failed, run.total) == ("done", len(ids), 0, len(ids))
    assert run.rate_per_s and run.rate_per_s > 0 and run.finished_at >= run.created_at
    assert set(run.as_dict()) >= {"id", "kind", "model", "state", "total", "done", "failed", "rate_per_s", "eta_s",
                                  "created_at", "finished_at", "errors"}
    memes = core.store.get_memes(ids)
    assert all(any(d.model_id == "fake" for d in m.descriptions) for m in memes)
    assert core.store.counts()["vectors"] == len(ids)  # described memes are re-embedded for search
    assert core.jobs.list_runs()[0].id == run.id


def test_a_second_describe_run_has_nothing_left_to_do(library, worker):
    core, _ = library
    scan(core)
    first = core.jobs.start("describe", model="fake")
    wait_for(lambda: finished(core, first.id))
    second = core.jobs.start("describe", model="fake")
    assert (second.total, second.state) == (0, "done")


def test_unreadable_image_fails_once_visibly(library, worker):
    core, folder = library
    ids = scan(core)
    broken = core.store.get_meme(ids[0])
    Path(broken.path).write_bytes(b"this is not an image anymore")
    run = core.jobs.start("describe", model="fake")
    run = wait_for(lambda: finished(core, run.id))
    assert (run.state, run.done, run.failed) == ("done", len(ids) - 1, 1)
    assert run.errors[0]["meme_id"] == broken.id and run.errors[0]["path"] == broken.path
    assert "not an image" in run.errors[0]["error"]
    assert core.store.item_attempts(run.id, broken.id) == 1  # permanent: never retried
    assert core.store.stage_counts("caption")["failed"] == 1


def test_retry_failed_requeues_and_finishes_after_the_file_is_fixed(library, worker):
    core, _ = library
    ids = scan(core)
    broken = core.store.get_meme(ids[1])
    original = Path(broken.path).read_bytes()
    Path(broken.path).write_bytes(b"garbage")
    run = core.jobs.start("describe", model="fake")
    run = wait_for(lambda: finished(core, run.id))
    assert run.failed == 1
    Path(broken.path).write_bytes(original)
    retried = core.jobs.retry_failed(run.id)
    assert retried.state == "queued" and retried.failed == 0 and retried.queued == 1
    run = wait_for(lambda: finished(core, run.id))
    assert (run.state, run.done, run.failed) == ("done", len(ids), 0)


def test_transient_model_errors_are_retried_with_backoff(library):
    core, _ = library
    ids = scan(core)
    # Every third caption fails; one worker thread makes the call order fixed.
    run = core.jobs.start("describe", model="fake-flaky")
    handle = start_in_process(core, concurrency=1)
    try:
        run = wait_for(lambda: finished(core, run.id), what="flaky run")
    finally:
        handle.stop()
    assert (run.state, run.done, run.failed) == ("done", len(ids), 0)
    assert max(core.store.item_attempts(run.id, i) for i in ids) >= 1  # some needed a retry


def test_transient_errors_give_up_after_max_attempts(library, worker):
    core, _ = library
    ids = scan(core)[:2]
    run = core.jobs.start("describe", model="fake-broken", meme_ids=ids)
    run = wait_for(lambda: finished(core, run.id), what="broken run")
    assert (run.state, run.failed) == ("failed", 2)
    assert "injected failure" in run.errors[0]["error"]
    assert all(core.store.item_attempts(run.id, i) == 3 for i in ids)  # job_max_attempts


def test_cancel_stops_a_run(library, worker):
    core, _ = library
    ids = scan(core)
    run = core.jobs.start("describe", model="fake-slow")
    wait_for(lambda: core.jobs.get(run.id).done >= 1, what="first meme")
    cancelled = core.jobs.cancel(run.id)
    assert cancelled.state == "cancelled"
    wait_for(lambda: core.jobs.get(run.id).running == 0, what="memes in hand to finish")
    after = core.jobs.get(run.id)
    time.sleep(0.8)  # a cancelled run must stay still
    final = core.jobs.get(run.id)
    assert final.done == after.done < len(ids)
    assert final.cancelled == len(ids) - final.done and final.state == "cancelled"


def test_explicit_meme_ids_regenerate_one_description(library, worker):
    core, _ = library
    ids = scan(core)
    first = core.jobs.start("describe", model="fake")
    wait_for(lambda: finished(core, first.id))
    before = core.store.get_meme(ids[2]).descriptions[0].created_at
    run = core.jobs.start("describe", model="fake", meme_ids=[ids[2]])
    run = wait_for(lambda: finished(core, run.id))
    assert (run.total, run.done) == (1, 1)
    assert core.store.get_meme(ids[2]).descriptions[0].created_at > before


def test_index_run_scans_then_processes(library, worker):
    core, folder = library
    run = core.jobs.start("index")
    run = wait_for(lambda: finished(core, run.id))
    assert run.state == "done" and run.total == len(core.store.meme_ids()) > 0
    assert core.store.counts()["vectors"] == run.total


def test_bad_requests_are_refused(library):
    core, _ = library
    with pytest.raises(InvalidInputError):
        core.jobs.start("paint")
    with pytest.raises(NotFoundError):
        core.jobs.start("describe", model="no-such-model")
    with pytest.raises(NotFoundError):
        core.jobs.start("index", folder_id=999)
    with pytest.raises(NotFoundError):
        core.jobs.get(12345)


def test_expired_lease_of_a_vanished_worker_is_requeued(library):
    core, _ = library
    ids = scan(core)
    run = core.jobs.start("describe", model="fake", meme_ids=ids[:2])
    # A worker claims a meme and dies without a word: its lease is all that is left.
    claimed = core.store.claim_run_items(run.id, 1, lease_s=0.05)
    assert core.jobs.get(run.id).running == 1
    time.sleep(0.1)
    report = reaper.tick(core.jobs)
    assert report["recovered"] == [run.id] and run.id in report["kicked"]
    assert core.jobs.get(run.id).queued == 2
    handle = start_in_process(core, concurrency=1)
    try:
        run = wait_for(lambda: finished(core, run.id))
    finally:
        handle.stop()
    assert (run.state, run.done) == ("done", 2)
    assert any(d.model_id == "fake" for d in core.store.get_meme(claimed[0]).descriptions)


def test_auto_rescan_starts_an_index_run_when_due(library):
    core, _ = library
    folder = core.store.list_folders()[0]
    assert reaper.tick(core.jobs)["rescans"] == []  # auto-scan off by default
    core.store.set_folder_auto_scan(folder.id, 5)
    started = reaper.tick(core.jobs)["rescans"]
    assert len(started) == 1 and core.jobs.get(started[0]).kind == "index"
    assert reaper.tick(core.jobs)["rescans"] == []  # one is pending already
    handle = start_in_process(core, concurrency=1)
    try:
        wait_for(lambda: finished(core, started[0]))
    finally:
        handle.stop()
    assert reaper.tick(core.jobs)["rescans"] == []  # just scanned: not due for 5 minutes
    assert reaper.tick(core.jobs, now=time.time() + 5 * 60 + 1)["rescans"] != []
