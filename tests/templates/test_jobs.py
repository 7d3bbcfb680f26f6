"""Template grouping in background index runs: features per meme by the workers, grouping once
when the run completes."""

from __future__ import annotations

from memesearch.app import Core
from memesearch.config import Settings
from memesearch.jobs.worker import start_in_process
from memesearch.ml.fake import FakeEmbedder
from memesearch.store.templates import TemplateStore
from memesearch.templates.synthetic import render_template_set
from tests.service.helpers import wait_for


def test_an_index_run_with_two_workers_groups_templates(tmp_path):
    memes = render_template_set(tmp_path / "memes", templates=3, variants=3, distractors=3, seed=2)
    # Real OCR: its caption boxes are what keeps captions out of the picture features.
    core = Core(Settings(home=tmp_path / "data", threads=1))
    core.__dict__["embedder"] = FakeEmbedder()  # the model boundary
    core.store.add_folder(str(tmp_path / "memes"))
    handle = start_in_process(core, concurrency=2)
    try:
        run = core.jobs.start("index")
        started = run.id
        run = wait_for(lambda: None if core.jobs.get(started).active else core.jobs.get(started), what="the index run")
    finally:
        handle.stop()
    assert run.state == "done" and run.failed == 0
    templates = TemplateStore(core.store)
    assert templates.pending() == [] and templates.ungrouped() == []
    by_path = {str(m.path.resolve()): m.template for m in memes}
    groups = templates.groups()
    assert sorted(g["size"] for g in groups) == [4, 4, 4]
    for group in groups:
        assert len({by_path[m["path"]] for m in group["members"]}) == 1
    core.close()
