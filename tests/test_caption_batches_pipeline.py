"""Bulk describe through the real pipeline and store: memes go to the model in batches, and
a meme the model fails on fails alone (the fake captioner is only the model boundary)."""

from __future__ import annotations

import pytest

from memesearch.app import Core
from memesearch.config import Settings
from memesearch.library.scanner import scan_folder
from memesearch.ml.chain import ChainCaptioner, Loaded
from memesearch.ml.fake import FakeCaptioner
from memesearch.ml.registry import get_spec


class CountingFake(FakeCaptioner):
    """The fake model, recording how many images each model call got."""

    def __init__(self, **options) -> None:
        super().__init__(**options)
        self.calls: list[int] = []

    def _caption_batch(self, requests):
        self.calls.append(len(requests))
        return super()._caption_batch(requests)


@pytest.fixture
def core(tmp_path):
    from memesearch.library.samples import render_sample_memes

    folder = tmp_path / "memes"
    render_sample_memes(folder, count=9, seed=5)
    core = Core(Settings(home=tmp_path / "data", ocr_enabled=False))
    core.store.add_folder(str(folder))
    for registered in core.store.list_folders():
        scan_folder(core.store, registered, core.settings)
    yield core
    core.close()


def chain_with(core: Core, model: CountingFake, dtype: str) -> ChainCaptioner:
    spec = get_spec("fake", core.settings.home)
    model.batch_size = 4
    model.dtype = dtype  # as a real backend's captioner carries the dtype it loaded
    chain = ChainCaptioner(spec, core.settings, ["fake"], loaders={"fake": lambda *_: Loaded(model, dtype, "")})
    return chain


def test_memes_are_described_in_batches(core):
    model = CountingFake()
    report = core.pipeline.run_caption(chain_with(core, model, "fp32"))
    assert report.done == 9 and report.failed == []
    assert model.calls == [1, 4, 4]  # the first call loads the model; then batches of its size
    described = [core.store.get_meme(i).descriptions for i in core.store.meme_ids()]
    assert all(len(d) == 1 and d[0].text.startswith("a mostly") for d in described)


def test_quantised_models_describe_one_meme_per_call(core):
    model = CountingFake()
    report = core.pipeline.run_caption(chain_with(core, model, "int8"))
    assert report.done == 9 and model.calls == [1] * 9


class RowWiseQuantisedFake(CountingFake):
    """A quantised model whose graph computes each row alone (as SmolVLM's per-row int8 decoder
    says of itself): its dtype alone would keep it at one meme a call."""

    @property
    def batches_exactly(self) -> bool:
        return True


def test_a_quantised_model_that_batches_exactly_is_batched(core):
    model = RowWiseQuantisedFake()
    chain = chain_with(core, model, "int8")
    report = core.pipeline.run_caption(chain)
    assert report.done == 9 and model.calls == [1, 4, 4]
    assert chain.dtype == "int8" and chain.batches_exactly


def test_one_failing_meme_does_not_fail_its_batch(core):
    # The model fails every 3rd image it sees: in the batch of memes 2-5 it fails on meme 3,
    # so that batch is retried one by one (model images 4-7), failing only meme 4; likewise
    # memes 6-9 fail only on meme 8. Memes the model did caption are all stored.
    model = CountingFake(fail_every=3)
    pending = core.store.ids_without_description("fake")
    report = core.pipeline.run_caption(chain_with(core, model, "fp32"))
    assert model.calls == [1, 4, 1, 1, 1, 1, 4, 1, 1, 1, 1]
    assert report.done == 7 and [meme_id for meme_id, _ in report.failed] == [pending[3], pending[7]]
    assert "injected failure" in report.failed[0][1]
    for meme_id in pending:
        meme = core.store.get_meme(meme_id)
        assert bool(meme.descriptions) == (meme_id not in (pending[3], pending[7]))
