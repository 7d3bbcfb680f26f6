"""MEMESEARCH_SPIN: idle onnxruntime threads spin (the default) or sleep."""

from __future__ import annotations

import pytest

from memesearch.ml.onnx_runtime import session
from tests.test_onnx_telemetry import _identity_model


@pytest.mark.parametrize(("value", "allowed"), [(None, None), ("1", None), ("false", "0"), ("0", "0")])
def test_spinning_is_turned_off_only_when_asked(value, allowed, tmp_path, monkeypatch):
    if value is None:
        monkeypatch.delenv("MEMESEARCH_SPIN", raising=False)
    else:
        monkeypatch.setenv("MEMESEARCH_SPIN", value)
    path = tmp_path / "identity.onnx"
    path.write_bytes(_identity_model())
    options = session.open_session(path, threads=2).get_session_options()
    if allowed is None:  # ORT's own default (spinning) is left alone: no entry
        with pytest.raises(Exception, match="allow_spinning"):
            options.get_session_config_entry("session.intra_op.allow_spinning")
    else:
        assert options.get_session_config_entry("session.intra_op.allow_spinning") == allowed
