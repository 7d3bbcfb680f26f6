"""A truncated model file: rebuilt when it can be, a clear error when it cannot; never a crash."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from typer.testing import CliRunner

from memesearch.app import Core
from memesearch.cli import app
from memesearch.config import Settings

pytestmark = pytest.mark.timeout(300)


def _truncate(path, keep: int = 4096) -> None:
    data = path.read_bytes()[:keep]
    path.write_bytes(data)


def test_a_truncated_converted_minilm_is_rebuilt_and_gives_the_same_vectors(tmp_path, shared_models_dir):
    intact_home = tmp_path / "intact"
    intact_home.mkdir()
    (intact_home / "models").symlink_to(shared_models_dir, target_is_directory=True)
    reference = Core(Settings(home=intact_home, threads=1)).embedder.embed(["a corrupted model file"])

    home = tmp_path / "data"
    shutil.copytree(shared_models_dir / "all-minilm-l6-v2", home / "models" / "all-minilm-l6-v2")
    onnx = home / "models" / "all-minilm-l6-v2" / "converted" / "model.onnx"
    size = onnx.stat().st_size
    _truncate(onnx)
    vectors = Core(Settings(home=home, threads=1)).embedder.embed(["a corrupted model file"])
    assert onnx.stat().st_size == size, "the cached ONNX was rebuilt in place"
    np.testing.assert_allclose(vectors, reference, atol=1e-5)


def test_a_truncated_model_without_a_source_is_a_clear_error(tmp_path, shared_models_dir):
    """A hub-layout model (onnx/model.onnx + tokenizer.json) cannot be rebuilt offline: say so, no traceback."""
    home = tmp_path / "data"
    hub = home / "models" / "all-minilm-l6-v2"
    (hub / "onnx").mkdir(parents=True)
    converted = shared_models_dir / "all-minilm-l6-v2" / "converted"
    (hub / "onnx" / "model.onnx").write_bytes((converted / "model.onnx").read_bytes()[:65536])
    for name in ("tokenizer.json", "sentence_bert_config.json"):
        source = converted / name
        if not source.exists():
            from memesearch.ml.minilm import find_package_model_dir

            source = find_package_model_dir() / name
        shutil.copy(source, hub / name)
    result = CliRunner().invoke(app, ["--data-dir", str(home), "search", "anything", "--json"])
    assert result.exit_code != 0
    output = result.output
    assert "Traceback" not in output
    assert "truncated or corrupt" in output and "model.onnx" in output, output
