"""Florence-2: our ONNX Runtime loop against transformers, token for token, on a tiny random model."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")

from memesearch.errors import InvalidInputError, ModelUnavailableError  # noqa: E402
from memesearch.ml.base import CaptionRequest  # noqa: E402
from memesearch.ml.families.florence2.export import export  # noqa: E402
from memesearch.ml.families.florence2.onnx_backend import OnnxFlorence2Captioner, required_files  # noqa: E402
from memesearch.ml.families.florence2 import tiny  # noqa: E402
from memesearch.ml.families.florence2.torch_backend import TorchFlorence2Captioner  # noqa: E402

pytestmark = pytest.mark.slow

MAX_NEW_TOKENS = 24


def _noise_image(seed: int, width: int, height: int, mode: str = "RGB") -> Image.Image:
    rng = np.random.default_rng(seed)
    channels = {"RGB": 3, "RGBA": 4, "L": 1}[mode]
    pixels = rng.integers(0, 256, (height, width, channels), dtype=np.uint8)
    return Image.fromarray(pixels.squeeze(-1) if channels == 1 else pixels, mode)


@pytest.fixture(scope="module", autouse=True)
def _few_threads():
    previous = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return tiny.build_tiny_checkpoint(tmp_path_factory.mktemp("florence2") / "checkpoint", seed=0)


@pytest.fixture(scope="module")
def exported(checkpoint, tmp_path_factory):
    return export(checkpoint, tmp_path_factory.mktemp("florence2") / "onnx", int8=True)


@pytest.fixture(scope="module")
def captioner(exported):
    return OnnxFlorence2Captioner(exported, threads=1)


@pytest.fixture(scope="module")
def reference(checkpoint):
    return tiny.load_reference(checkpoint)


@pytest.fixture(scope="module")
def images():
    return [_noise_image(1, 90, 50), _noise_image(2, 70, 120)]


def _requests(images, prompt=tiny.TINY_PROMPT, max_new_tokens=MAX_NEW_TOKENS):
    return [CaptionRequest(image=image, prompt=prompt, max_new_tokens=max_new_tokens) for image in images]


def test_exported_files_follow_the_community_layout(exported):
    onnxruntime = pytest.importorskip("onnxruntime")
    for relative in required_files("fp32") + required_files("int8"):
        assert (exported / relative).is_file(), relative
    decoder = onnxruntime.InferenceSession(str(exported / "onnx/decoder_model_merged.onnx"))
    inputs = {item.name for item in decoder.get_inputs()}
    outputs = {item.name for item in decoder.get_outputs()}
    assert {"inputs_embeds", "encoder_hidden_states", "encoder_attention_mask", "use_cache_branch"} <= inputs
    for layer in range(2):
        for part in ("decoder.key", "decoder.value", "encoder.key", "encoder.value"):
            assert f"past_key_values.{layer}.{part}" in inputs
            assert f"present.{layer}.{part}" in outputs
    vision = onnxruntime.InferenceSession(str(exported / "onnx/vision_encoder.onnx"))
    assert [i.name for i in vision.get_inputs()] == ["pixel_values"]
    assert [o.name for o in vision.get_outputs()] == ["image_features"]
    encoder = onnxruntime.InferenceSession(str(exported / "onnx/encoder_model.onnx"))
    assert [i.name for i in encoder.get_inputs()] == ["inputs_embeds", "attention_mask"]


def test_required_files_rejects_unknown_dtype():
    assert "onnx/decoder_model_merged_q4.onnx" in required_files("q4")
    with pytest.raises(ModelUnavailableError):
        required_files("int3")


@pytest.mark.parametrize(
    "prompt",
    [
        "<OCR>",
        "<MORE_DETAILED_CAPTION>",
        "<CAPTION>",
        "<CAPTION_TO_PHRASE_GROUNDING> a red cat",
        "Is this a meme?",
    ],
)
def test_prompt_ids_match_the_processor(captioner, reference, images, prompt):
    _, processor = reference
    input_ids = processor(text=[prompt], images=images[:1], return_tensors="np")["input_ids"][0].tolist()
    image_tokens = processor.num_image_tokens
    assert input_ids[:image_tokens] == [processor.tokenizer.image_token_id] * image_tokens
    assert captioner.prompt_ids(prompt) == input_ids[image_tokens:]


def test_task_token_with_extra_text_is_rejected(captioner):
    with pytest.raises(InvalidInputError):
        captioner.prompt_ids("<OCR> and more")


def test_preprocessing_matches_the_processor(captioner, reference):
    _, processor = reference
    samples = [
        _noise_image(3, 90, 50),
        _noise_image(4, 64, 64),
        _noise_image(5, 31, 200, "RGBA"),  # transparency goes onto white, as in transformers
        _noise_image(6, 300, 120, "L"),
    ]
    expected = processor.image_processor(samples, return_tensors="np")["pixel_values"]
    ours = captioner.pixel_values(samples)
    assert ours.shape == expected.shape == (4, 3, tiny.TINY_IMAGE_SIZE, tiny.TINY_IMAGE_SIZE)
    assert ours.dtype == np.float32
    assert np.abs(ours - expected).max() <= 1e-6


def test_one_image_matches_transformers_token_for_token(captioner, checkpoint, reference, images):
    expected = tiny.reference_generate(checkpoint, images[:1], tiny.TINY_PROMPT, MAX_NEW_TOKENS)
    [result] = captioner.caption(_requests(images[:1]))
    assert result.token_ids == expected[0]
    assert len(result.token_ids) > 5
    assert result.backend == "onnx"
    _, processor = reference
    decoded = processor.batch_decode([[0, *expected[0], 2]], skip_special_tokens=False)[0]
    cleaned = processor.post_process_generation(decoded, task=tiny.TINY_PROMPT)[tiny.TINY_PROMPT]
    assert result.text == cleaned


def test_batch_of_two_images_matches_transformers(captioner, checkpoint, images):
    expected = tiny.reference_generate(checkpoint, images, tiny.TINY_PROMPT, MAX_NEW_TOKENS)
    results = captioner.caption(_requests(images))
    assert [result.token_ids for result in results] == expected
    assert expected[0] != expected[1]  # the images really lead to different captions


def test_mixed_prompts_are_padded_like_the_processor(captioner, checkpoint, images):
    prompts = ["<OCR>", "<MORE_DETAILED_CAPTION>"]  # different lengths: the shorter one is padded
    expected = tiny.reference_generate_prompts(checkpoint, images, prompts, MAX_NEW_TOKENS)
    requests = [
        CaptionRequest(image=image, prompt=prompt, max_new_tokens=MAX_NEW_TOKENS)
        for image, prompt in zip(images, prompts, strict=True)
    ]
    assert [result.token_ids for result in captioner.caption(requests)] == expected


def test_short_limit_forces_eos_like_transformers(captioner, checkpoint, images):
    expected = tiny.reference_generate(checkpoint, images, tiny.TINY_PROMPT, 3)
    results = captioner.caption(_requests(images, max_new_tokens=3))
    assert [result.token_ids for result in results] == expected
    assert all(len(ids) == 1 for ids in expected)  # forced BOS, one token, forced EOS
    # Different limits in one batch run apart and come back in order.
    longer = tiny.reference_generate(checkpoint, images[1:], tiny.TINY_PROMPT, MAX_NEW_TOKENS)
    mixed = captioner.caption(
        [
            CaptionRequest(image=images[0], prompt=tiny.TINY_PROMPT, max_new_tokens=3),
            CaptionRequest(image=images[1], prompt=tiny.TINY_PROMPT, max_new_tokens=MAX_NEW_TOKENS),
        ]
    )
    assert [result.token_ids for result in mixed] == [expected[0], longer[0]]


def test_torch_backend_matches_onnx(captioner, checkpoint, images):
    torch_captioner = TorchFlorence2Captioner(checkpoint, threads=2)
    torch_results = torch_captioner.caption(_requests(images))
    onnx_results = captioner.caption(_requests(images))
    assert [r.token_ids for r in torch_results] == [r.token_ids for r in onnx_results]
    assert [r.text for r in torch_results] == [r.text for r in onnx_results]
    assert torch_results[0].backend == "torch"


def test_int8_export_runs_and_mostly_agrees(exported, captioner, images):
    int8 = OnnxFlorence2Captioner(exported, dtype="int8", threads=1)
    quantised = [r.token_ids for r in int8.caption(_requests(images))]
    full = [r.token_ids for r in captioner.caption(_requests(images))]
    pairs = [(a, b) for q, f in zip(quantised, full) for a, b in zip(q, f)]
    agreement = sum(a == b for a, b in pairs) / max(len(pairs), 1)
    print(f"int8 vs fp32 token agreement: {agreement:.2f}")
    assert all(len(ids) > 0 for ids in quantised)
    assert agreement >= 0.5


def test_corrupt_onnx_file_gives_a_clear_error(exported, tmp_path, images):
    broken = tmp_path / "broken"
    shutil.copytree(exported, broken)
    (broken / "onnx/decoder_model_merged.onnx").write_bytes(b"this is not an onnx file")
    with pytest.raises(ModelUnavailableError, match="decoder_model_merged.onnx"):
        OnnxFlorence2Captioner(broken, threads=1).caption(_requests(images[:1]))


def test_missing_files_are_listed(exported, tmp_path, images):
    partial = tmp_path / "partial"
    shutil.copytree(exported, partial)
    (partial / "onnx/encoder_model.onnx").unlink()
    with pytest.raises(ModelUnavailableError, match="encoder_model.onnx"):
        OnnxFlorence2Captioner(partial, threads=1).caption(_requests(images[:1]))


def test_torch_backend_reports_unloadable_source(tmp_path, images):
    with pytest.raises(ModelUnavailableError, match="Florence-2"):
        TorchFlorence2Captioner(tmp_path / "nothing-here").caption(_requests(images[:1]))


def test_onnx_runtime_imports_neither_torch_nor_transformers(exported):
    script = f"""
import sys
from PIL import Image
from memesearch.ml.base import CaptionRequest
from memesearch.ml.families.florence2.onnx_backend import OnnxFlorence2Captioner
captioner = OnnxFlorence2Captioner({str(exported)!r}, threads=1)
[result] = captioner.caption([CaptionRequest(image=Image.new("RGB", (40, 30), "red"), prompt="<OCR>", max_new_tokens=6)])
assert result.token_ids, result
leaked = sorted(name for name in ("torch", "transformers") if name in sys.modules)
assert not leaked, leaked
"""
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert completed.returncode == 0, completed.stderr
