"""The "image embed" stage: incremental, resumable, one bad file is that file's error, spaces per model.

Real stores (SQLite and PostgreSQL), scanner, pipeline and a tiny random CLIP exported by our
exporter; only the text embedder is a fake.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from memesearch.library.indexing import run_index
from memesearch.errors import ConfigError
from memesearch.ml.registry import get_spec
from memesearch.library.decode import load_rgb
from memesearch.library.samples import render_sample_memes
from memesearch.library.scanner import scan_folder
from memesearch.visual import stage as image_stage
from memesearch.visual.model import STAGE, space_of
from tests.visual.conftest import MODEL_ID, floor_override, install_clip, visual_core


def _library(tmp_path: Path, count: int, seed: int = 5) -> Path:
    folder = tmp_path / "memes"
    render_sample_memes(folder, count=count, seed=seed)
    return folder


def test_index_embeds_every_image_once_without_touching_text_vectors(tmp_path, clip_models, database_url):
    home = tmp_path / "data"
    install_clip(home, clip_models)
    folder = _library(tmp_path, 5)
    first_file = sorted(p for p in folder.iterdir() if p.is_file())[0]
    (folder / ("zz-copy" + first_file.suffix)).write_bytes(first_file.read_bytes())  # same bytes, two memes
    core = visual_core(home, database_url)
    core.store.add_folder(str(folder))
    assert core.visual is not None and core.visual.space == space_of(MODEL_ID)

    first = run_index(core)
    ids = core.store.meme_ids()
    assert len(ids) == 6 and first["image_embed"]["failed"] == []
    assert (first["image_embed"]["done"], first["image_embed"]["skipped"]) == (5, 1)  # the copy is not embedded twice
    memes = {meme.id: meme for meme in core.store.get_memes(ids)}
    assert core.store.vector_hashes(core.visual.space) == {i: memes[i].sha256 for i in ids}  # hash = the bytes
    # The stored vector is the model's vector of the decoded file.
    stored_ids, matrix = core.store.load_vectors(core.visual.space)
    fresh = core.visual.embed_images([load_rgb(Path(memes[int(stored_ids[0])].path), 64.0)])[0]
    assert float(matrix[0] @ fresh) >= 0.9999
    # Text vectors live in their own space and their stage is not marked by image vectors.
    assert core.store.ids_needing_vectors(core.embedder.model_id) == []
    assert len(core.store.vector_hashes(core.embedder.model_id)) == 6

    again = run_index(core)
    assert again["image_embed"]["done"] == 0  # incremental: nothing new
    changed = Path(memes[ids[0]].path)
    changed.write_bytes(Path(memes[ids[1]].path).read_bytes())  # new bytes for one file
    third = run_index(core)
    assert third["image_embed"]["done"] == 1
    core.close()


def test_a_file_that_no_longer_decodes_is_its_own_error_and_the_batch_goes_on(tmp_path, clip_models, database_url):
    home = tmp_path / "data"
    install_clip(home, clip_models)
    folder = _library(tmp_path, 4)
    core = visual_core(home, database_url)
    core.store.add_folder(str(folder))
    for registered in core.store.list_folders():
        scan_folder(core.store, registered, core.settings)
    ids = core.store.meme_ids()
    broken = core.store.get_meme(ids[1])
    Path(broken.path).write_bytes(b"\x89PNG\r\n\x1a\n" + b"not really a png" * 10)  # after the scan

    report = core.pipeline.run_image_embed(core.visual)
    assert report["done"] == 3 and [f["id"] for f in report["failed"]] == [ids[1]]
    assert core.store.get_meme(ids[1]).status == "error"  # listed by `status --errors`, not retried
    assert set(core.store.vector_hashes(core.visual.space)) == set(ids) - {ids[1]}
    assert core.pipeline.run_image_embed(core.visual)["done"] == 0
    core.close()


def test_an_interrupted_stage_keeps_what_it_saved_and_resumes(tmp_path, clip_models, monkeypatch):
    home = tmp_path / "data"
    install_clip(home, clip_models)
    folder = _library(tmp_path, 7)
    core = visual_core(home)
    core.store.add_folder(str(folder))
    for registered in core.store.list_folders():
        scan_folder(core.store, registered, core.settings)
    monkeypatch.setattr(image_stage, "SAVE_EVERY", 3)
    model = core.visual.embedder()
    real = model.embed_images
    calls = {"n": 0}

    def interrupted(images):  # Ctrl-C while the 5th image is being embedded
        calls["n"] += 1
        if calls["n"] == 5:
            raise KeyboardInterrupt
        return real(images)

    monkeypatch.setattr(model, "embed_images", interrupted)
    with pytest.raises(KeyboardInterrupt):
        core.pipeline.run_image_embed(core.visual)
    assert len(core.store.vector_hashes(core.visual.space)) == 3  # the first saved batch survived
    monkeypatch.setattr(model, "embed_images", real)
    report = core.pipeline.run_image_embed(core.visual)
    assert report["done"] == 4 and len(core.store.vector_hashes(core.visual.space)) == 7
    assert core.store.stage_counts(STAGE) == {"done": 7}
    core.close()


def test_switching_models_never_mixes_spaces(tmp_path, clip_models, database_url):
    home = tmp_path / "data"
    other = "clip-vit-b-16"  # the second shipped spec: the tiny CLIP stands in for its files
    install_clip(home, clip_models)
    install_clip(home, clip_models, other, models_yml=floor_override(-1, other))
    folder = _library(tmp_path, 3)
    core = visual_core(home, database_url)
    core.store.add_folder(str(folder))
    run_index(core)
    first_space = core.visual.space
    assert len(core.store.vector_hashes(first_space)) == 3
    core.close()

    switched = visual_core(home, database_url, visual_model=other)
    assert switched.visual.space == space_of(other) != first_space
    # The override changed one key; the rest is the shipped spec of the clip family.
    assert switched.visual.relevance_floor == -1 and switched.visual.image_floor == get_spec(other, home).image_floor
    # Before its own stage ran, the new model finds nothing: the old model's vectors are not its own.
    assert switched.search_engine.visual.rank("anything at all", 50, None) == ([], True)
    assert len(image_stage.pending(switched.store, switched.visual.space)) == 3
    summary = run_index(switched)
    assert summary["image_embed"]["done"] == 3
    assert len(switched.store.vector_hashes(first_space)) == 3  # the first space is kept, untouched
    hits, _ = switched.search_engine.visual.rank("anything at all", 50, None)
    assert len(hits) == 3  # relevance_floor -1: every picture of its own space, none twice
    switched.close()


def test_visual_search_is_off_when_not_installed_or_turned_off(tmp_path, clip_models, monkeypatch):
    import memesearch.app

    core = visual_core(tmp_path / "bare")
    assert core.visual is None and core.search_engine.visual is None
    assert core.pipeline.run_image_embed(core.visual)["done"] == 0
    install_clip(tmp_path / "bare", clip_models)  # downloaded while the app runs (the web app's pull)
    assert core.visual is None  # looked for again only after a while
    monkeypatch.setattr(memesearch.app, "VISUAL_RECHECK_S", 0.0)
    assert core.visual is not None and core.search_engine.visual is not None
    core.close()
    home = tmp_path / "data"
    install_clip(home, clip_models)
    assert visual_core(home, visual_model="none").visual is None
    assert visual_core(home).visual is not None
    for wrong, why in (("smolvlm-256m", "caption model"), ("no-such-model", "unknown model")):
        with pytest.raises(ConfigError, match=why):
            visual_core(home, visual_model=wrong).visual  # noqa: B018 - a wrong setting is said, not ignored


def test_status_names_the_model_and_its_vectors_or_what_turns_it_on(tmp_path, clip_models):
    from typer.testing import CliRunner

    from memesearch.cli import app

    home = tmp_path / "data"

    def status(visual_model: str = "clip-vit-b-32") -> tuple[dict, str]:
        env = {"MEMESEARCH_VISUAL_MODEL": visual_model}
        as_json = CliRunner().invoke(app, ["--data-dir", str(home), "status", "--json"], env=env)
        table = CliRunner().invoke(app, ["--data-dir", str(home), "status"], env=env)
        assert as_json.exit_code == 0 and table.exit_code == 0, as_json.output + table.output
        return json.loads(as_json.stdout), "".join(table.stdout.split())

    data, table = status()
    assert (data["visual_model"], data["image_vectors"]) == (None, 0)
    assert "off(memesearchmodelspullclip-vit-b-32)" in table  # configured, not downloaded
    install_clip(home, clip_models)
    core = visual_core(home)
    core.store.add_folder(str(_library(tmp_path, 3)))
    run_index(core)
    core.close()
    data, table = status()
    assert (data["visual_model"], data["image_vectors"]) == ("clip-vit-b-32", 3)
    assert "clip-vit-b-32:3imagevectors" in table
    data, table = status("none")
    assert data["visual_model"] is None and "off(MEMESEARCH_VISUAL_MODEL)" in table
