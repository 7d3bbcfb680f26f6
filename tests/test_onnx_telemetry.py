"""onnxruntime telemetry is switched off before any session memesearch opens (ours and rapidocr's)."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime
import pytest
from onnx import TensorProto, helper

from memesearch.ml.families.moondream import onnx_backend as moondream
from memesearch.ml.onnx_runtime import session


def _identity_model() -> bytes:
    graph = helper.make_graph([helper.make_node("Identity", ["x"], ["y"])], "identity",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model.SerializeToString()


@pytest.fixture
def calls(monkeypatch):
    """Records, in order, when telemetry is switched off and when a session is created."""
    seen: list[str] = []
    real_disable, real_session = onnxruntime.disable_telemetry_events, onnxruntime.InferenceSession

    def disable():
        seen.append("telemetry off")
        real_disable()

    def inference_session(*args, **kwargs):
        seen.append("session")
        return real_session(*args, **kwargs)

    monkeypatch.setattr(onnxruntime, "disable_telemetry_events", disable)
    monkeypatch.setattr(onnxruntime, "InferenceSession", inference_session)
    return seen


def test_open_session_turns_telemetry_off_first(tmp_path, calls):
    path = tmp_path / "identity.onnx"
    path.write_bytes(_identity_model())
    runner = session.open_session(path, threads=1)
    assert calls == ["telemetry off", "session"]
    x = np.array([1.5, -2.0], dtype=np.float32)
    assert np.array_equal(runner.run(None, {"x": x})[0], x)


def test_in_memory_graph_sessions_turn_telemetry_off_first(tmp_path, calls):
    runner = moondream._open_session("identity", _identity_model(), 1, tmp_path / "bundle.onnx")
    assert calls == ["telemetry off", "session"]
    assert runner.get_inputs()[0].name == "x"


def test_rapidocr_engine_turns_telemetry_off_before_loading(calls):
    from memesearch.ml.ocr import RapidOcrEngine

    engine = RapidOcrEngine(threads=1)
    engine._load()
    assert calls and calls[0] == "telemetry off"


def test_a_build_without_the_switch_still_opens_sessions(tmp_path, monkeypatch):
    monkeypatch.delattr(onnxruntime, "disable_telemetry_events")
    path = tmp_path / "identity.onnx"
    path.write_bytes(_identity_model())
    assert session.open_session(path, threads=1).get_outputs()[0].name == "y"
    assert onnx.load(str(path)).graph.node[0].op_type == "Identity"
