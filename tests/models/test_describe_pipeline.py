"""The caption stage end to end: export a tiny SmolVLM, install it, `index --describe`, search by it."""

from __future__ import annotations

import json

import pytest
from PIL import Image
from typer.testing import CliRunner

pytest.importorskip("torch")
pytestmark = pytest.mark.slow

from memesearch.cli import app  # noqa: E402

runner = CliRunner()


def cli(home, *args):
    result = runner.invoke(app, ["--data-dir", str(home), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result


def test_export_install_describe_and_search(tmp_path, shared_models_dir):
    from memesearch.ml.families.smolvlm.tiny import build_tiny_checkpoint

    checkpoint = build_tiny_checkpoint(tmp_path / "ckpt", seed=0)
    cli(tmp_path / "home0", "models", "export", "smolvlm-256m", "--from", str(checkpoint), "--out", str(tmp_path / "onnx"))
    home = tmp_path / "home"
    home.mkdir()
    (home / "models").mkdir()
    # Keep the session's embedding model; caption models live next to it.
    (shared_models_dir / "all-minilm-l6-v2").mkdir(exist_ok=True)
    (home / "models" / "all-minilm-l6-v2").symlink_to(shared_models_dir / "all-minilm-l6-v2", target_is_directory=True)
    cli(home, "models", "pull", "smolvlm-256m", "--dtype", "fp32", "--from", str(tmp_path / "onnx"))
    memes = tmp_path / "memes"
    memes.mkdir()
    for index, color in enumerate(((200, 20, 20), (20, 200, 20))):
        Image.new("RGB", (96, 72), color).save(memes / f"plain-{index}.png")
    cli(home, "add", str(memes))
    with_env = {"MEMESEARCH_CAPTION_MODEL": "smolvlm-256m"}
    result = runner.invoke(app, ["--data-dir", str(home), "index", "--describe", "--json"], env=with_env, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["caption"]["done"] == 2 and summary["caption"]["failed"] == []
    meme = json.loads(cli(home, "show", "1", "--json").stdout)
    (description,) = meme["descriptions"]
    assert description["model_id"] == "smolvlm-256m" and description["backend"] == "onnx"
    assert description["revision"] and description["text"].strip()
    # The generated text is indexed: its words find the meme.
    words = [w for w in description["text"].split() if w.isalpha()][:3]
    if words:
        found = json.loads(cli(home, "search", " ".join(words), "--mode", "keyword", "--json").stdout)
        assert 1 in [hit["id"] for hit in found["hits"]]
    # Nothing is described twice.
    again = runner.invoke(app, ["--data-dir", str(home), "index", "--describe", "--json"], env=with_env, catch_exceptions=False)
    assert json.loads(again.stdout)["caption"]["done"] == 0
