"""MEMESEARCH_SPIN: idle onnxruntime threads spin during a run and stop at its end (the default),
never spin, or keep spinning after a run (ORT's own default)."""

from __future__ import annotations

import pytest

from memesearch.ml.onnx_runtime import session
from tests.test_onnx_telemetry import _identity_model

ALLOW_SPINNING = "session.intra_op.allow_spinning"
FORCE_SPINNING_STOP = "session.force_spinning_stop"


def _entry(options, key: str) -> str | None:
    try:
        return options.get_session_config_entry(key)
    except Exception:  # ORT raises when the key was never set
        return None


@pytest.mark.parametrize(("value", "mode", "allow", "stop"), [
    (None, "run", None, "1"),
    ("1", "run", None, "1"),
    ("run", "run", None, "1"),
    ("false", "never", "0", None),
    ("0", "never", "0", None),
    ("never", "never", "0", None),
    ("always", "always", None, None),  # ORT's own default is left alone: no entry at all
])
def test_spin_mode_sets_the_session_entries(value, mode, allow, stop, tmp_path, monkeypatch):
    if value is None:
        monkeypatch.delenv("MEMESEARCH_SPIN", raising=False)
    else:
        monkeypatch.setenv("MEMESEARCH_SPIN", value)
    assert session.spin_mode() == mode
    path = tmp_path / "identity.onnx"
    path.write_bytes(_identity_model())
    for opened in (session.open_session(path, threads=2), session.open_session(path, threads=2, low_memory=True)):
        options = opened.get_session_options()
        assert _entry(options, ALLOW_SPINNING) == allow
        assert _entry(options, FORCE_SPINNING_STOP) == stop


def test_moondream_bundles_open_their_graphs_with_the_same_options(tmp_path, monkeypatch):
    """The in-memory graphs of a Moondream bundle get the spin mode too (they once had their own copy
    of the options, without it)."""
    from memesearch.ml.families.moondream.onnx_backend import _open_session

    monkeypatch.delenv("MEMESEARCH_SPIN", raising=False)
    opened = _open_session("identity", _identity_model(), 1, tmp_path / "bundle.onnxbundle")
    options = opened.get_session_options()
    assert options.intra_op_num_threads == 1
    assert _entry(options, FORCE_SPINNING_STOP) == "1"


@pytest.mark.parametrize(("value", "mode"), [("run", "run"), ("True", "run"), ("1", "run"), ("false", "never"),
                                             ("NEVER", "never"), ("always", "always")])
def test_settings_read_the_spin_mode(value, mode, monkeypatch):
    from memesearch.config import Settings

    monkeypatch.setenv("MEMESEARCH_SPIN", value)
    assert Settings().spin == mode == session.spin_mode()


def test_a_bad_spin_value_is_a_settings_error_and_sessions_still_open(tmp_path, monkeypatch):
    from pydantic import ValidationError

    from memesearch.config import Settings

    monkeypatch.setenv("MEMESEARCH_SPIN", "fast")
    with pytest.raises(ValidationError, match="run, never, always"):
        Settings()
    assert session.spin_mode() == "run"
    path = tmp_path / "identity.onnx"
    path.write_bytes(_identity_model())
    assert _entry(session.open_session(path, threads=2).get_session_options(), FORCE_SPINNING_STOP) == "1"
