"""A tiny random CLIP, exported by our exporter and pulled like a download, shared by visual-search tests."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memesearch.app import Core
from memesearch.cli import app
from memesearch.config import Settings
from memesearch.ml.fake import FakeEmbedder

MODEL_ID = "clip-vit-b-32"


@pytest.fixture(scope="session")
def clip_models(tmp_path_factory) -> Path:
    """A models dir holding the tiny CLIP in Immich's layout (``models pull --from``)."""
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    from memesearch.ml.families.clip import export, tiny

    work = tmp_path_factory.mktemp("tiny-clip")
    checkpoint = tiny.build_tiny_checkpoint(work / "checkpoint", seed=0)
    exported = export.export(checkpoint, work / "onnx", int8=True)
    home = work / "home"
    result = CliRunner().invoke(app, ["--data-dir", str(home), "models", "pull", MODEL_ID, "--from", str(exported)])
    assert result.exit_code == 0, result.output
    return home / "models"


def install_clip(home: Path, clip_models: Path, model_id: str = MODEL_ID, *, models_yml: str = "") -> None:
    """The tiny CLIP under ``model_id`` in ``home``'s models dir (plus a models.yml override)."""
    shutil.copytree(clip_models / MODEL_ID, home / "models" / model_id, dirs_exist_ok=True)
    if models_yml:
        (home / "models.yml").write_text(models_yml, encoding="utf-8")


def floor_override(floor: float | None = None, model_id: str = MODEL_ID, *, image_floor: float | None = None) -> str:
    """A models.yml override of the text-to-image floor and/or search by image's image-to-image floor."""
    keys = {"relevance_floor": floor, "image_floor": image_floor}
    lines = "".join(f"    {key}: {value}\n" for key, value in keys.items() if value is not None)
    return f"models:\n  {model_id}:\n{lines}"


def visual_core(home: Path, database_url: str = "", **overrides) -> Core:
    """A Core on real stores, scanner, pipeline and engine; only the text embedder is a fake
    (the model boundary), so these tests need no MiniLM build."""
    settings = Settings(home=home, database_url=database_url, ocr_enabled=False, threads=1, **overrides)
    core = Core(settings)
    embedder = FakeEmbedder()
    embedder.relevance_floor = 0.33  # as MiniLM's: texts sharing no word are no hit
    core.__dict__["embedder"] = embedder
    return core


def indexed_core(tmp_path: Path, clip_models: Path, database_url: str = "", *, models_yml: str = "",
                 count: int = 6) -> Core:
    """A Core with the tiny CLIP installed over an indexed library of sample memes (the real
    index run: scan, templates, image embed); ``models_yml`` overrides the spec, as a user would."""
    from memesearch.library.indexing import run_index
    from memesearch.library.samples import render_sample_memes

    home = tmp_path / "data"
    install_clip(home, clip_models, models_yml=models_yml)
    folder = tmp_path / "memes"
    if not folder.exists():
        render_sample_memes(folder, count=count, seed=11)
    core = visual_core(home, database_url)
    core.store.add_folder(str(folder))
    run_index(core)
    return core


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request) -> str:
    return "" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
