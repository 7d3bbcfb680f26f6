"""The caption fallback chain: each way a backend can fail, and what the user is told."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper
from PIL import Image

from memesearch.config import Settings
from memesearch.errors import MissingDependencyError, ModelUnavailableError
from memesearch.ml import chain, families
from memesearch.ml.base import CaptionResult, Captioner
from memesearch.ml.failures import BackendRunError
from memesearch.ml.model_files import MissingFilesError
from memesearch.ml.onnx_runtime.session import open_session
from memesearch.ml.registry import ModelSpec

REVISION = "0123456789abcdef0123456789abcdef01234567"


class IdentityOnnxCaptioner(Captioner):
    """A real onnxruntime session over one file; the 'caption' is the graph's output."""

    backend = "onnx"

    def __init__(self, model_dir: Path, *, dtype: str = "fp32", threads: int | None = None, streams: int = 1) -> None:
        super().__init__()
        self.model_dir = Path(model_dir)
        self.dtype = dtype
        self.batch_size, self.streams = 4, streams

    def _load(self) -> None:
        self.session = open_session(self.model_dir / "onnx" / f"model_{self.dtype}.onnx", threads=1)

    def _caption_batch(self, requests):
        import numpy as np

        (out,) = self.session.run(None, {"x": np.array([3.0], dtype=np.float32)})
        return [CaptionResult(text=f"onnx says {out[0]:.0f}", token_ids=[int(out[0])]) for _ in requests]


def _family_module() -> types.ModuleType:
    module = types.ModuleType("memesearch_test_family_onnx")
    IdentityOnnxCaptioner.__module__ = module.__name__
    module.IdentityOnnxCaptioner = IdentityOnnxCaptioner
    module.required_files = lambda dtype: [f"onnx/model_{dtype}.onnx", "tokenizer.json"]
    return module


@pytest.fixture
def family(monkeypatch):
    """Route the smolvlm family's ONNX code to the identity captioner above."""
    module = _family_module()
    real = families.family_module

    def fake_family_module(kind: str, family: str):
        return module if kind == "onnx" else real(kind, family)

    monkeypatch.setattr(families, "family_module", fake_family_module)
    return module


@pytest.fixture
def no_transformers(monkeypatch):
    """Simulate an install without the torch extra (a None entry makes `import` fail)."""
    monkeypatch.setitem(sys.modules, "transformers", None)


def make_spec(backends: list[str]) -> ModelSpec:
    return ModelSpec.model_validate(
        {
            "id": "test-model",
            "family": "smolvlm",
            "prompt": "Describe.",
            "backends": backends,
            "sources": {
                "onnx": {"repo": "org/test", "revision": REVISION, "default_dtype": "fp32", "dtypes": {"fp32": {}, "int8": {}}},
                "torch": {"repo": "org/test-torch", "revision": "main"},
                "fake": {},
            },
        }
    )


def write_identity_model(path: Path) -> None:
    graph = helper.make_graph(
        [helper.make_node("Identity", ["x"], ["y"])],
        "identity",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])],
    )
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), path)


def install_files(settings: Settings, dtype: str = "fp32", *, corrupt: bool = False) -> None:
    directory = settings.models_dir / "test-model"
    model = directory / "onnx" / f"model_{dtype}.onnx"
    if corrupt:
        model.parent.mkdir(parents=True, exist_ok=True)
        model.write_bytes(b"\x08\x07this is not a protobuf")
    else:
        write_identity_model(model)
    (directory / "tokenizer.json").write_text("{}")


def image() -> Image.Image:
    return Image.new("RGB", (32, 32), (10, 200, 10))


def test_the_chain_runs_its_models_streams_with_quantised_weights_one_meme_per_batch(tmp_path, family):
    from memesearch.ml.caption_batches import batch_size_of

    settings = Settings(home=tmp_path / "data", caption_streams=3)
    install_files(settings, "int8")
    captioner = chain.load_captioner(make_spec(["onnx"]), settings, dtype="int8")
    assert (captioner.streams, captioner.call_batch, batch_size_of(captioner)) == (3, 1, 3)
    assert [r.text for r in captioner.caption_images([image()] * 3)] == ["onnx says 3"] * 3


def test_first_working_backend_runs_and_results_say_where_they_came_from(settings, family):
    install_files(settings)
    captioner = chain.load_captioner(make_spec(["onnx", "fake"]), settings)
    result = captioner.caption_images([image()])[0]
    assert result.text == "onnx says 3"
    assert (result.model_id, result.backend, result.dtype, result.revision) == ("test-model", "onnx", "fp32", REVISION)
    assert result.ms > 0
    assert captioner.failures == {}


def test_missing_files_and_missing_package_fall_through_to_the_next_backend(settings, family, no_transformers):
    captioner = chain.load_captioner(make_spec(["onnx", "torch", "fake"]), settings)
    result = captioner.caption_images([image()])[0]
    assert result.backend == "fake"
    assert "a mostly green square meme" in result.text
    onnx_failure, torch_failure = captioner.failures["onnx"], captioner.failures["torch"]
    assert isinstance(onnx_failure, MissingFilesError) and "onnx/model_fp32.onnx" in onnx_failure.message
    assert onnx_failure.hint == "memesearch models pull test-model"
    assert isinstance(torch_failure, MissingDependencyError) and torch_failure.hint == "pip install 'memesearch[torch]'"


def test_corrupt_onnx_file_gives_a_clear_reason_then_falls_back(settings, family):
    install_files(settings, corrupt=True)
    captioner = chain.load_captioner(make_spec(["onnx", "fake"]), settings)
    assert captioner.caption_images([image()])[0].backend == "fake"
    failure = captioner.failures["onnx"]
    assert "cannot load ONNX model" in failure.message and "model_fp32.onnx" in failure.message
    assert "download it again" in failure.hint


def test_requested_dtype_selects_its_files(settings, family):
    install_files(settings, "fp32")
    with pytest.raises(ModelUnavailableError) as error:
        chain.load_captioner(make_spec(["onnx"]), settings, dtype="int8")
    assert "onnx/model_int8.onnx" in error.value.message
    assert "memesearch models pull test-model --dtype int8" in error.value.message


def test_when_nothing_works_the_error_lists_every_backend_and_the_fixes(settings, family, no_transformers):
    with pytest.raises(ModelUnavailableError) as error:
        chain.load_captioner(make_spec(["onnx", "torch"]), settings)
    message, hint = error.value.message, error.value.hint
    assert "no backend could run caption model 'test-model'" in message
    assert "- onnx: 2 file(s) missing" in message
    assert "- torch: " in message and "transformers" in message
    assert "memesearch models pull test-model" in hint
    assert "pip install 'memesearch[torch]'" in hint


def test_a_backend_failing_at_run_time_falls_through_for_that_call_only(settings):
    calls = {"flaky": 0}

    class Flaky(Captioner):
        backend = "onnx"

        def _caption_batch(self, requests):
            calls["flaky"] += 1
            if calls["flaky"] == 1:
                raise RuntimeError("ORT: out of memory")
            return [CaptionResult(text="flaky recovered") for _ in requests]

    loaders = dict(chain.LOADERS, onnx=lambda spec, settings, dtype: chain.Loaded(Flaky(), "fp32", REVISION))
    captioner = chain.load_captioner(make_spec(["onnx", "fake"]), settings, loaders=loaders)
    first = captioner.caption_images([image()])[0]
    assert first.backend == "fake"
    run_failure = captioner.run_failures["onnx"]
    assert isinstance(run_failure, BackendRunError) and "out of memory" in run_failure.message
    assert isinstance(run_failure.__cause__, RuntimeError)
    second = captioner.caption_images([image()])[0]
    assert (second.backend, second.text) == ("onnx", "flaky recovered")


def test_backend_flag_restricts_the_chain(settings, family, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # no hub: torch must fail fast, not retry
    install_files(settings)
    captioner = chain.load_captioner(make_spec(["onnx", "fake"]), settings, backend="fake")
    assert captioner.caption_images([image()])[0].backend == "fake"
    with pytest.raises(ModelUnavailableError) as error:
        chain.load_captioner(make_spec(["onnx", "fake"]), settings, backend="torch")
    assert "- torch: " in error.value.message
    assert "- onnx" not in error.value.message


def test_api_fallback_without_a_key_names_the_variable(settings, monkeypatch):
    monkeypatch.delenv("MEMESEARCH_OPENAI_API_KEY", raising=False)
    with pytest.raises(ModelUnavailableError) as error:
        chain.load_captioner(make_spec(["onnx", "api"]).model_copy(update={"backends": ["api"]}), settings)
    assert "MEMESEARCH_OPENAI_API_KEY" in error.value.message


def test_fake_captioner_is_deterministic_and_can_inject_failures():
    from memesearch.ml.base import CaptionRequest
    from memesearch.ml.fake import FakeCaptioner

    red = CaptionRequest(image=Image.new("RGB", (90, 30), (220, 40, 40)), prompt="x")
    blue = CaptionRequest(image=Image.new("RGB", (30, 90), (40, 80, 220)), prompt="x")
    first = FakeCaptioner().caption([red, blue])
    assert first[0].text.startswith("a mostly red wide meme, 90x30 pixels")
    assert first[1].text.startswith("a mostly blue tall meme, 30x90 pixels")
    assert [r.text for r in FakeCaptioner().caption([red, blue])] == [r.text for r in first]
    flaky = FakeCaptioner(fail_every=2)
    flaky.caption([red])
    with pytest.raises(ModelUnavailableError, match="injected failure on image #2"):
        flaky.caption([red])


def test_fake_embedder_vectors_are_normalised_and_share_words():
    import numpy as np

    from memesearch.ml.fake import FakeEmbedder

    vectors = FakeEmbedder().embed(["distracted boyfriend meme", "boyfriend distracted", "drake hotline bling", ""])
    assert vectors.shape == (4, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0)
    assert vectors[0] @ vectors[1] > 0.7
    assert abs(vectors[0] @ vectors[2]) < 0.5
    assert np.array_equal(FakeEmbedder().embed(["drake hotline bling"])[0], vectors[2])


def test_smolvlm_image_size_from_models_yml_reaches_both_backends(tmp_path):
    from memesearch.ml.chain import _image_options
    from memesearch.ml.families.florence2.onnx_backend import OnnxFlorence2Captioner
    from memesearch.ml.families.smolvlm.onnx_backend import OnnxSmolVLMCaptioner
    from memesearch.ml.registry import get_spec
    from memesearch.ml.families.smolvlm.torch_backend import TorchSmolVLMCaptioner

    spec = get_spec("smolvlm-256m", tmp_path)
    assert spec.generation.image_longest_edge == 512
    assert _image_options(OnnxSmolVLMCaptioner, spec) == {"image_longest_edge": 512}
    assert _image_options(TorchSmolVLMCaptioner, spec) == {"image_longest_edge": 512}
    assert _image_options(OnnxFlorence2Captioner, get_spec("florence-2-base", tmp_path)) == {}
