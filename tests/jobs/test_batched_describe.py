"""Describe runs claim and caption several memes together (issue 16, bulk describe), yet each
meme is completed, failed, retried and leased on its own. The fake captioner is only the model
boundary: the store, the claims, the leases, the reaper and the worker threads are real."""

from __future__ import annotations

from pathlib import Path

import pytest

from memesearch.app import Core
from memesearch.config import Settings
from memesearch.jobs.worker import start_in_process
from memesearch.library.scanner import scan_folder
from memesearch.ml.chain import ChainCaptioner, Loaded
from memesearch.ml.fake import FakeCaptioner, FakeEmbedder
from memesearch.ml.registry import get_spec
from tests.service.helpers import wait_for, write_fake_models


class CountingFake(FakeCaptioner):
    """The fake model, recording the memes each model call got (by the caption's content id)."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.calls: list[int] = []
        self.images: list[bytes] = []

    def _caption_batch(self, requests):
        self.calls.append(len(requests))
        self.images += [request.image.tobytes() for request in requests]
        return super()._caption_batch(requests)


def make_core(tmp_path: Path, count: int = 6, lease_s: float = 2, database_url: str = "") -> Core:
    from memesearch.library.samples import render_sample_memes

    folder = tmp_path / "memes"
    render_sample_memes(folder, count=count, seed=7)
    home = tmp_path / "data"
    write_fake_models(home, delay=0.0)
    core = Core(Settings(home=home, ocr_enabled=False, job_lease_s=lease_s, job_max_attempts=3,
                         database_url=database_url))
    core.__dict__["embedder"] = FakeEmbedder()
    core.store.add_folder(str(folder))
    for registered in core.store.list_folders():
        scan_folder(core.store, registered, core.settings)
    return core


def use_model(core: Core, model: CountingFake, dtype: str = "fp32", batch_size: int = 4) -> None:
    """Core.captioner("fake") answers with a chain over ``model`` (not loaded yet, as in real use)."""
    model.batch_size = batch_size
    model.dtype = dtype  # as a real backend's captioner carries the dtype it loaded
    spec = get_spec("fake", core.settings.home)
    chain = ChainCaptioner(spec, core.settings, ["fake"], loaders={"fake": lambda *_: Loaded(model, dtype, "")})
    core.__dict__.setdefault("_captioners", {})["fake"] = chain


def run_to_end(core: Core, concurrency: int = 1, **start):
    run = core.jobs.start("describe", model="fake", **start)
    handle = start_in_process(core, concurrency=concurrency)
    try:
        return wait_for(lambda: (lambda r: r if not r.active else None)(core.jobs.get(run.id)), what="the run")
    finally:
        handle.stop()


@pytest.fixture
def core(tmp_path):
    core = make_core(tmp_path)
    yield core
    core.close()


def test_a_describe_run_captions_memes_in_batches_of_the_model(core):
    model = CountingFake()
    use_model(core, model)
    run = run_to_end(core)
    ids = core.store.meme_ids()
    assert (run.state, run.done, run.failed) == ("done", len(ids), 0)
    assert model.calls == [1, 4, 1]  # the first meme loads the model alone; then its batch size
    memes = core.store.get_memes(ids)
    assert all(len(m.descriptions) == 1 and m.descriptions[0].text.startswith("a mostly") for m in memes)
    assert core.store.counts()["vectors"] == len(ids)  # each described meme was embedded


def test_batched_captions_equal_one_at_a_time(tmp_path):
    texts = {}
    for batch_size in (1, 4):
        core = make_core(tmp_path / str(batch_size))
        use_model(core, CountingFake(), batch_size=batch_size)
        run_to_end(core)
        # Each meme's own caption, by file name: a batch must not hand a caption to the wrong meme.
        texts[batch_size] = {Path(m.path).name: m.descriptions[0].text for m in core.store.get_memes(core.store.meme_ids())}
        core.close()
    assert texts[1] == texts[4] and len(set(texts[4].values())) == 6


def test_quantised_models_are_claimed_one_meme_at_a_time(core):
    model = CountingFake()
    use_model(core, model, dtype="int8")
    run = run_to_end(core)
    assert run.done == 6 and model.calls == [1] * 6


def test_streams_claim_a_batch_per_stream_and_quantised_models_one_meme_per_stream(tmp_path):
    from memesearch.ml.caption_batches import batch_size_of

    for dtype, batch_size, calls in (("fp32", 2, [1, 2, 2, 1]), ("int8", 4, [1] * 6)):
        core = make_core(tmp_path / dtype)
        model = CountingFake()
        model.streams = 2
        use_model(core, model, dtype=dtype, batch_size=batch_size)
        run = run_to_end(core)
        assert (run.done, model.calls) == (6, calls)
        assert batch_size_of(core.captioner("fake")) == 2 * (batch_size if dtype == "fp32" else 1)
        core.close()


def test_an_unreadable_meme_fails_alone_in_its_batch(core):
    model = CountingFake()
    use_model(core, model)
    ids = core.store.meme_ids()
    core.captioner("fake").ensure_loaded()  # loaded: the first claim is a whole batch
    broken = core.store.get_meme(ids[1])
    Path(broken.path).write_bytes(b"this is not an image anymore")
    run = run_to_end(core)
    assert (run.state, run.done, run.failed) == ("done", len(ids) - 1, 1)
    assert run.errors[0]["meme_id"] == broken.id and "not an image" in run.errors[0]["error"]
    assert core.store.item_attempts(run.id, broken.id) == 1  # permanent: never retried
    assert core.store.stage_counts("caption")["failed"] == 1
    assert model.calls == [3, 2]  # the batch's three readable memes went to the model together


def test_a_transient_model_failure_retries_only_its_meme(core):
    model = CountingFake(fail_every=3)  # the third image the model sees fails
    use_model(core, model)
    core.captioner("fake").ensure_loaded()
    run = run_to_end(core)
    ids = core.store.meme_ids()
    assert (run.state, run.done, run.failed) == ("done", len(ids), 0)
    attempts = [core.store.item_attempts(run.id, meme_id) for meme_id in ids]
    assert sum(attempts) >= 1 and attempts.count(0) >= 3  # the failed batch's other memes went through at once
    assert all(len(m.descriptions) == 1 for m in core.store.get_memes(ids))


def test_every_meme_of_a_slow_batch_keeps_its_lease(tmp_path, caplog):
    """A batch outlasting the lease: each of its memes' leases is renewed, so the reaper takes
    none of them back (a meme re-queued mid-caption would be claimed by another worker)."""
    caplog.set_level("WARNING", logger="memesearch.jobs.reaper")
    core = make_core(tmp_path, count=8, lease_s=1.0)
    model = CountingFake(delay_s=0.5)  # a batch of 4 takes 2 s, twice the lease
    use_model(core, model)
    core.captioner("fake").ensure_loaded()
    try:
        run = run_to_end(core, concurrency=2)
        assert (run.state, run.done) == ("done", 8)
        assert sorted(model.calls) == [4, 4]
        assert len(set(model.images)) == len(model.images) == 8
        assert all(core.store.item_attempts(run.id, meme_id) == 0 for meme_id in core.store.meme_ids())
        assert not [r for r in caplog.records if "lease expired" in r.getMessage()]
    finally:
        core.close()


def test_two_workers_claim_disjoint_batches_on_postgres(tmp_path, postgres_url):
    """PostgreSQL hands each worker its own batch (FOR UPDATE SKIP LOCKED): no meme twice."""
    core = make_core(tmp_path, count=12, database_url=postgres_url)
    assert core.store.kind == "postgres"
    model = CountingFake(delay_s=0.1)
    use_model(core, model)
    core.captioner("fake").ensure_loaded()
    try:
        run = run_to_end(core, concurrency=3)
        assert (run.state, run.done, run.failed) == ("done", 12, 0)
        assert sorted(model.calls) == [4, 4, 4] and len(set(model.images)) == 12
        assert all(len(m.descriptions) == 1 for m in core.store.get_memes(core.store.meme_ids()))
    finally:
        core.close()


def test_cancel_lets_the_batch_in_hand_finish_and_claims_nothing_more(tmp_path):
    core = make_core(tmp_path, count=10)
    model = CountingFake(delay_s=0.3)
    use_model(core, model)
    core.captioner("fake").ensure_loaded()
    run = core.jobs.start("describe", model="fake")
    handle = start_in_process(core, concurrency=1)
    try:
        wait_for(lambda: model.calls, what="the first batch")
        core.jobs.cancel(run.id)
        wait_for(lambda: core.jobs.get(run.id).running == 0, what="the batch in hand to finish")
        final = core.jobs.get(run.id)
    finally:
        handle.stop()
        core.close()
    assert final.state == "cancelled" and final.done == 4 and final.cancelled == 6
    assert model.calls == [4]
