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


def floor_override(floor: float, model_id: str = MODEL_ID) -> str:
    return f"models:\n  {model_id}:\n    relevance_floor: {floor}\n"


def visual_core(home: Path, database_url: str = "", **overrides) -> Core:
    """A Core on real stores, scanner, pipeline and engine; only the text embedder is a fake
    (the model boundary), so these tests need no MiniLM build."""
    settings = Settings(home=home, database_url=database_url, ocr_enabled=False, threads=1, **overrides)
    core = Core(settings)
    embedder = FakeEmbedder()
    embedder.relevance_floor = 0.33  # as MiniLM's: texts sharing no word are no hit
    core.__dict__["embedder"] = embedder
    return core


@pytest.fixture(params=["sqlite", "postgres"])
def database_url(request) -> str:
    return "" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
