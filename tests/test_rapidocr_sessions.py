"""rapidocr's own onnxruntime sessions follow MEMESEARCH_SPIN like ours (ml/rapidocr_sessions.py)."""

from __future__ import annotations

import pytest
from PIL import Image

from memesearch.ml import rapidocr_sessions
from memesearch.ml.ocr import RapidOcrEngine
from tests.test_ocr import _text_image
from tests.test_onnx_spinning import ALLOW_SPINNING, FORCE_SPINNING_STOP, _entry


def _sessions(engine: RapidOcrEngine):
    engine.read(Image.new("RGB", (300, 120), "white"))  # loads; the warm-up read opens the recogniser
    return [engine._engine.text_det.session.session, engine._engine.text_rec.session.session]


@pytest.mark.parametrize(("value", "allow", "stop"), [(None, None, "1"), ("0", "0", None), ("always", None, None)])
def test_detector_and_recogniser_sessions_get_the_spin_mode(value, allow, stop, monkeypatch):
    if value is None:
        monkeypatch.delenv("MEMESEARCH_SPIN", raising=False)
    else:
        monkeypatch.setenv("MEMESEARCH_SPIN", value)
    sessions = _sessions(RapidOcrEngine(threads=2))
    assert len(sessions) == 2
    for session in sessions:
        options = session.get_session_options()
        assert options.intra_op_num_threads == 2  # rapidocr's own settings are kept
        assert _entry(options, ALLOW_SPINNING) == allow
        assert _entry(options, FORCE_SPINNING_STOP) == stop


def test_wrapping_is_done_once():
    from rapidocr.inference_engine.onnxruntime.main import OrtInferSession

    assert rapidocr_sessions.use_our_spin_mode()
    wrapped = OrtInferSession.__dict__["_init_sess_opts"]
    assert rapidocr_sessions.use_our_spin_mode()
    assert OrtInferSession.__dict__["_init_sess_opts"] is wrapped


def test_a_rapidocr_of_another_layout_keeps_its_options_and_still_reads(monkeypatch):
    """Where ``_init_sess_opts`` is not the static method we know, nothing is wrapped and OCR still
    works, with rapidocr's own options."""
    from rapidocr.inference_engine.onnxruntime.main import OrtInferSession

    monkeypatch.delenv("MEMESEARCH_SPIN", raising=False)
    ours_or_theirs = OrtInferSession.__dict__["_init_sess_opts"].__func__
    original = getattr(ours_or_theirs, "__wrapped__", ours_or_theirs)  # rapidocr's own, unwrapped
    monkeypatch.setattr(OrtInferSession, "_init_sess_opts", lambda self, cfg: original(cfg))  # a plain method
    assert not rapidocr_sessions.use_our_spin_mode()
    engine = RapidOcrEngine(threads=1)
    for session in _sessions(engine):
        assert _entry(session.get_session_options(), FORCE_SPINNING_STOP) is None
    words = engine.read(_text_image((420, 120), [((20, 30), "HELLO WORLD")])).text
    assert "HELLO" in words.upper()
