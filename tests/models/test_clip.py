"""The clip family (visual search): preprocessing, tokenizer, ONNX parity, pull, fallback.

Real components throughout: transformers' CLIPImageProcessor / CLIPTokenizer / CLIPModel as
the references, our exporter, ONNX Runtime, the real CLI. The model is a tiny random CLIP
(memesearch/ml/families/clip/tiny.py); the full-size cost is in bench/bench_clip.py.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from memesearch.cli import app
from memesearch.config import Settings
from memesearch.errors import ConfigError, InvalidInputError, ModelUnavailableError
from memesearch.ml.families.clip.preprocess import ImageSettings, preprocess
from memesearch.ml.registry import get_spec, load_registry
from memesearch.ml.failures import failure_reason

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from memesearch.ml.families.clip import export  # noqa: E402
from memesearch.ml.image_text import load_image_text_embedder  # noqa: E402
from memesearch.ml.families.clip.onnx_backend import ClipOnnxEmbedder, onnx_file  # noqa: E402
from memesearch.ml.families.clip.tokenizer import ClipTokenizer  # noqa: E402
from memesearch.ml.families.clip import tiny  # noqa: E402
from memesearch.ml.families.common import int8_reference  # noqa: E402

MODEL_ID = "clip-vit-b-32"
PARITY = 0.9999
runner = CliRunner()


def cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.sum(a * b, axis=1)


@pytest.fixture(scope="module")
def tiny_export(tmp_path_factory):
    work = tmp_path_factory.mktemp("clip")
    checkpoint = tiny.build_tiny_checkpoint(work / "checkpoint", seed=0)
    return checkpoint, export.export(checkpoint, work / "onnx", int8=True)


@pytest.fixture(scope="module")
def reference(tiny_export):
    return tiny.Reference(tiny_export[0])


# ----------------------------------------------------------------------------- preprocessing


def _pictures() -> list[Image.Image]:
    rng = np.random.default_rng(0)
    noise = lambda h, w, c=3: rng.integers(0, 256, (h, w, c) if c > 1 else (h, w), dtype=np.uint8)  # noqa: E731
    rgb = Image.fromarray(noise(300, 500))
    with_transparency = rgb.convert("P")
    with_transparency.info["transparency"] = 0
    return [
        rgb,                                          # landscape
        Image.fromarray(noise(501, 333)),             # portrait, odd crop offsets
        Image.fromarray(noise(224, 224)),             # already the size
        Image.fromarray(noise(225, 224)),             # one pixel too tall
        Image.fromarray(noise(60, 100)),              # upscaled
        Image.fromarray(noise(3, 900)),               # a banner
        Image.fromarray(noise(80, 90, 4), "RGBA"),    # alpha composited on white
        Image.fromarray(noise(80, 90, 1), "L"),       # greyscale
        Image.fromarray(noise(70, 50, 4), "RGBA").convert("LA"),
        with_transparency,                            # palette with a transparent index
        rgb.convert("CMYK"),
        Image.fromarray((noise(40, 60, 1).astype(np.int32) * 200), "I"),  # 32-bit greyscale
    ]


@pytest.mark.parametrize("index", range(12))
def test_preprocessing_equals_clip_image_processor_pixel_for_pixel(index):
    image = _pictures()[index]
    expected = transformers.CLIPImageProcessor()(images=image, return_tensors="np")["pixel_values"][0]
    ours = preprocess(image, ImageSettings())
    assert ours.dtype == np.float32 and ours.shape == (3, 224, 224)
    np.testing.assert_array_equal(ours, expected)


def test_preprocessing_settings_of_other_models_are_honoured():
    """A SigLIP-like config: no crop margin, other mean/std, bilinear."""
    processor = transformers.CLIPImageProcessor(
        size={"shortest_edge": 256}, crop_size={"height": 192, "width": 192}, resample=2,
        image_mean=[0.5, 0.5, 0.5], image_std=[0.5, 0.5, 0.5],
    )
    settings = ImageSettings(crop=192, shortest_edge=256, mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                             interpolation="bilinear")
    image = _pictures()[1]
    np.testing.assert_array_equal(preprocess(image, settings), processor(images=image, return_tensors="np")["pixel_values"][0])


def test_a_huge_banner_is_preprocessed_without_a_huge_resize():
    banner = Image.new("RGB", (400_000, 2), (200, 30, 30))  # would be 44.8 M x 224 px resized in full
    pixels = preprocess(banner, ImageSettings())
    assert pixels.shape == (3, 224, 224)
    expected_red = (200 / 255 - 0.48145466) / 0.26862954
    assert np.allclose(pixels[0], expected_red, atol=1e-5)


def test_preprocessing_refuses_what_is_not_an_image():
    with pytest.raises(InvalidInputError):
        preprocess(b"not an image", ImageSettings())


# ----------------------------------------------------------------------------- tokenizer


TEXTS = [
    *tiny.CHECK_TEXTS,
    "ＦＵＬＬＷＩＤＴＨ and Ǆ ligatures, İstanbul, straße",
    "e\u0301 (combining accent) vs é",
    "tabs\tand\r\nnewlines\u00a0nbsp",
    "<|endoftext|> typed by a user",
    "🤣🤣🤣" * 40,  # far over 77 tokens, all bytes
]


def test_tokenizer_equals_clip_tokenizer(tiny_export, reference):
    _, exported = tiny_export
    ours = ClipTokenizer.from_dir(exported / "textual").encode(TEXTS)
    expected = np.asarray(reference.token_ids(TEXTS))
    assert ours.dtype == np.int32 and ours.shape == (len(TEXTS), 77)
    np.testing.assert_array_equal(ours, expected)
    eos = reference.tokenizer.eos_token_id
    long_row = ours[-1]
    assert long_row[0] == reference.tokenizer.bos_token_id and long_row[-1] == eos  # cut to 75 + 2
    assert (ours[5][:2] == [reference.tokenizer.bos_token_id, eos]).all()  # the empty text


def test_tokenizer_refuses_non_texts(tiny_export):
    with pytest.raises(InvalidInputError):
        ClipTokenizer.from_dir(tiny_export[1] / "textual").encode(["ok", None])


# ----------------------------------------------------------------------------- ONNX parity


def test_exported_layout_is_immichs(tiny_export):
    _, exported = tiny_export
    for name in ("config.json", "visual/model.onnx", "visual/preprocess_cfg.json", "textual/model.onnx",
                 "textual/tokenizer.json", "textual/tokenizer_config.json"):
        assert (exported / name).is_file(), name
    config = json.loads((exported / "config.json").read_text())
    assert config["embed_dim"] == 24 and config["text_cfg"]["context_length"] == 77
    import onnxruntime as ort

    visual = ort.InferenceSession(str(exported / "visual/model.onnx"))
    textual = ort.InferenceSession(str(exported / "textual/model.onnx"))
    assert [(i.name, i.type) for i in visual.get_inputs()] == [("image", "tensor(float)")]
    assert [(i.name, i.type) for i in textual.get_inputs()] == [("text", "tensor(int32)")]
    assert visual.get_outputs()[0].name == textual.get_outputs()[0].name == "embedding"


def test_onnx_fp32_embeddings_equal_transformers(tiny_export, reference):
    _, exported = tiny_export
    images, texts = tiny.check_images(), TEXTS
    model = ClipOnnxEmbedder(exported, dtype="fp32", threads=1)
    image_vectors, text_vectors = model.embed_images(images), model.embed_texts(texts)
    assert image_vectors.shape == (len(images), 24) and image_vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(text_vectors, axis=1), 1.0, rtol=1e-5)
    assert cosines(image_vectors, reference.embed_images(images)).min() >= PARITY
    assert cosines(text_vectors, reference.embed_texts(texts)).min() >= PARITY
    # Not vacuous: different inputs give different vectors.
    assert cosines(text_vectors[:1], text_vectors[1:2])[0] < 0.99


def test_onnx_int8_embeddings_equal_the_int8_reference(tiny_export, reference):
    _, exported = tiny_export
    images, texts = tiny.check_images(), TEXTS
    model = ClipOnnxEmbedder(exported, dtype="int8", threads=1)
    image_vectors, text_vectors = model.embed_images(images), model.embed_texts(texts)
    with int8_reference.emulate_ort_int8(patch_convs=True):
        expected_images, expected_texts = reference.embed_images(images), reference.embed_texts(texts)
    assert cosines(image_vectors, expected_images).min() >= PARITY
    assert cosines(text_vectors, expected_texts).min() >= PARITY
    import onnx

    assert "Conv" not in {node.op_type for node in onnx.load(str(exported / onnx_file("visual", "int8"))).graph.node}
    # Not vacuous: int8 is not fp32.
    assert not np.allclose(image_vectors, reference.embed_images(images), atol=1e-6)


def test_the_int8_patch_embedding_is_a_matmul_equal_to_its_emulation(tmp_path):
    """clip/patch_matmul.py: the patch Conv becomes Reshape/Transpose/MatMul, quantised like
    every MatMul, and the reference's int8 conv2d computes exactly what ONNX Runtime does."""
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper, numpy_helper

    from memesearch.ml.families.clip.onnx_backend import quantize_file

    rng = np.random.default_rng(0)
    weight = (0.2 * rng.standard_normal((6, 3, 4, 4))).astype(np.float32)
    bias = rng.standard_normal(6).astype(np.float32)
    conv = helper.make_node("Conv", ["x", "w", "b"], ["y"], kernel_shape=[4, 4], strides=[4, 4])
    graph = helper.make_graph([conv], "patches", [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["n", 3, 8, 12])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
                              [numpy_helper.from_array(weight, "w"), numpy_helper.from_array(bias, "b")])
    source = tmp_path / "conv.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(source))
    quantize_file(source, tmp_path / "conv_int8.onnx")
    ops = {node.op_type for node in onnx.load(str(tmp_path / "conv_int8.onnx")).graph.node}
    assert "Conv" not in ops and "MatMulInteger" in ops
    x = rng.standard_normal((2, 3, 8, 12)).astype(np.float32)
    session = ort.InferenceSession(str(tmp_path / "conv_int8.onnx"), providers=["CPUExecutionProvider"])
    got = session.run(None, {"x": x})[0]
    with int8_reference.emulate_ort_int8(patch_convs=True):
        emulated = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(weight), torch.from_numpy(bias), stride=4)
    np.testing.assert_array_equal(got, emulated.numpy())
    exact = torch.nn.functional.conv2d(torch.from_numpy(x), torch.from_numpy(weight), torch.from_numpy(bias), stride=4)
    assert got.shape == exact.shape and not np.allclose(got, exact.numpy(), atol=1e-6)  # int8, not fp32
    np.testing.assert_allclose(got, exact.numpy(), atol=0.1)  # ... close to it, in the same layout


def test_the_non_legacy_eos_pooling_exports_too(tmp_path):
    """Checkpoints whose eos_token_id is the real end token pool at its first occurrence."""
    checkpoint = tiny.build_tiny_checkpoint(tmp_path / "ckpt", seed=1, eos_token_id=len(tiny.vocab_and_merges()[0]) - 1)
    exported = export.export(checkpoint, tmp_path / "onnx")
    reference = tiny.Reference(checkpoint)
    vectors = ClipOnnxEmbedder(exported, threads=1).embed_texts(TEXTS)
    assert cosines(vectors, reference.embed_texts(TEXTS)).min() >= PARITY


def test_int8_graphs_are_quantised_once_from_fp32(tiny_export, tmp_path):
    """Immich publishes fp32 only: int8 is derived on first use and then reused."""
    _, exported = tiny_export
    folder = tmp_path / "model"
    shutil.copytree(exported, folder)
    for tower in ("visual", "textual"):
        (folder / onnx_file(tower, "int8")).unlink()
    model = ClipOnnxEmbedder(folder, dtype="int8", threads=1)
    model.embed_texts(["a photo of a cat"])
    assert (folder / onnx_file("textual", "int8")).is_file()
    assert not (folder / onnx_file("visual", "int8")).exists()  # the image tower was never needed
    model.embed_images([tiny.check_images()[0]])
    derived = folder / onnx_file("visual", "int8")
    assert derived.is_file() and not list(folder.rglob("*.partial"))
    np.testing.assert_array_equal(
        model.embed_images([tiny.check_images()[0]]),
        ClipOnnxEmbedder(exported, dtype="int8", threads=1).embed_images([tiny.check_images()[0]]),
    )


def test_vectors_do_not_depend_on_batch_neighbours(tiny_export):
    model = ClipOnnxEmbedder(tiny_export[1], dtype="int8", threads=1)
    images = tiny.check_images()
    together = model.embed_images(images)
    alone = np.concatenate([model.embed_images([image]) for image in images])
    np.testing.assert_array_equal(together, alone)


def test_bad_inputs_are_clear_errors(tiny_export):
    model = ClipOnnxEmbedder(tiny_export[1], threads=1)
    with pytest.raises(InvalidInputError):
        model.embed_texts("one string, not a list")
    with pytest.raises(InvalidInputError):
        model.embed_images(["/path/to/meme.png"])
    assert model.embed_images([]).shape == (0, 24) and model.embed_texts([]).shape == (0, 24)


# ----------------------------------------------------------------------------- registry, pull, fallback


def test_registry_entry():
    spec = get_spec(MODEL_ID)
    assert spec.family == "clip" and spec.is_image_text and spec.backends == ["onnx", "torch"]
    assert spec.sources.onnx.repo == "immich-app/ViT-B-32__openai" and spec.sources.onnx.pinned


def test_a_caption_model_still_needs_a_prompt(tmp_path):
    (tmp_path / "models.yml").write_text("models:\n  mine:\n    family: florence2\n    backends: [onnx]\n"
                                         "    sources: {onnx: {repo: a/b}}\n")
    with pytest.raises(ConfigError, match="needs a prompt"):
        load_registry(tmp_path / "models.yml")


@pytest.mark.timeout(20)
def test_pull_offline_fails_fast_naming_immichs_files(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = runner.invoke(app, ["--data-dir", str(tmp_path), "models", "pull", MODEL_ID])
    assert result.exit_code == 2
    text = "".join(result.output.split())
    revision = get_spec(MODEL_ID).sources.onnx.revision
    for name in ("visual/model.onnx", "visual/preprocess_cfg.json", "textual/model.onnx", "textual/tokenizer.json"):
        assert f"https://huggingface.co/immich-app/ViT-B-32__openai/resolve/{revision}/{name}" in text
    assert f"memesearchmodelspull{MODEL_ID}--fromFOLDER" in text
    assert "keepingthesub-folders" in text


def _pulled_home(tmp_path, exported) -> Settings:
    home = tmp_path / "data"
    result = runner.invoke(app, ["--data-dir", str(home), "models", "pull", MODEL_ID, "--from", str(exported)])
    assert result.exit_code == 0, result.output
    return Settings(home=home, threads=1)


def test_pulled_files_run_through_the_image_text_embedder(tiny_export, reference, tmp_path):
    settings = _pulled_home(tmp_path, tiny_export[1])
    embedder = load_image_text_embedder(get_spec(MODEL_ID), settings)
    assert embedder.backend == "onnx" and embedder.dtype == "int8"  # the models.yml default
    images = tiny.check_images()
    image_vectors = embedder.embed_images(images)
    query = embedder.embed_query("a photo of a cat")
    assert image_vectors.shape == (3, 24) and query.shape == (24,) and embedder.dim == 24
    fp32 = load_image_text_embedder(get_spec(MODEL_ID), settings, dtype="fp32")
    assert cosines(fp32.embed_images(images), reference.embed_images(images)).min() >= PARITY
    listed = runner.invoke(app, ["--data-dir", str(settings.home), "models", "list", "--json"])
    row = next(m for m in json.loads(listed.stdout)["models"] if m["id"] == MODEL_ID)
    assert row["family"] == "clip" and row["files"].startswith("6/6") and row["backend"] == "onnx (int8)"


def test_falls_back_to_torch_without_onnx_files_and_on_a_corrupt_graph(tiny_export, reference, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing may come from the hub
    checkpoint, exported = tiny_export
    home = tmp_path / "data"
    shutil.copytree(checkpoint, home / "models" / MODEL_ID / "torch")
    settings = Settings(home=home, threads=1)
    images = tiny.check_images()

    embedder = load_image_text_embedder(get_spec(MODEL_ID), settings)
    assert embedder.backend == "torch" and "missing" in failure_reason(embedder.failures["onnx"])
    assert cosines(embedder.embed_images(images), reference.embed_images(images)).min() >= PARITY

    settings = _pulled_home(tmp_path, exported)
    (settings.models_dir / MODEL_ID / "visual" / "model.onnx").write_bytes(b"truncated download")
    embedder = load_image_text_embedder(get_spec(MODEL_ID), settings, dtype="fp32")
    assert embedder.backend == "onnx"
    vectors = embedder.embed_images(images)  # the visual graph fails to open: this call runs on torch
    assert embedder.backend == "torch" and "cannot load ONNX model" in failure_reason(embedder.failures["onnx"])
    assert cosines(vectors, reference.embed_images(images)).min() >= PARITY


def test_clip_is_not_a_caption_model_and_captioners_are_not_visual_models(tmp_path):
    from memesearch.ml.chain import load_captioner

    settings = Settings(home=tmp_path)
    with pytest.raises(ConfigError, match="not a caption model"):
        load_captioner(get_spec(MODEL_ID), settings)
    with pytest.raises(ConfigError, match="not an image-text embedding model"):
        load_image_text_embedder(get_spec("florence-2-base"), settings)
    picture = tmp_path / "meme.png"
    Image.new("RGB", (40, 30), (10, 200, 30)).save(picture)
    refused = runner.invoke(app, ["--data-dir", str(tmp_path), "caption", str(picture), "--model", MODEL_ID])
    assert refused.exit_code == 2 and "not a caption model" in refused.output


def test_int8_that_cannot_be_written_is_a_clear_error(tiny_export, tmp_path):
    """E.g. a read-only models folder (simulated with a folder in the way: tests may run as root)."""
    folder = tmp_path / "model"
    shutil.copytree(tiny_export[1], folder)
    (folder / onnx_file("textual", "int8")).unlink()
    (folder / "textual" / "model_int8.onnx.lock").mkdir()
    with pytest.raises(ModelUnavailableError, match="cannot write the int8 graph"):
        ClipOnnxEmbedder(folder, dtype="int8", threads=1).embed_texts(["a cat"])
    assert ClipOnnxEmbedder(folder, dtype="fp32", threads=1).embed_texts(["a cat"]).shape == (1, 24)


def test_installed_check_compares_onnx_with_the_torch_backend(tiny_export, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("MEMESEARCH_THREADS", "1")
    checkpoint, exported = tiny_export
    settings = _pulled_home(tmp_path, exported)
    shutil.copytree(checkpoint, settings.models_dir / MODEL_ID / "torch")
    result = runner.invoke(app, ["--data-dir", str(settings.home), "models", "check", "--json"])
    assert result.exit_code == 0, result.output
    rows = {(r["backend"], r["dtype"]): r for r in json.loads(result.stdout)["results"] if r["model"] == MODEL_ID}
    assert set(rows) == {("onnx", "fp32"), ("onnx", "int8"), ("torch", "fp32")}
    assert rows["torch", "fp32"]["loads"] and rows["torch", "fp32"]["ms_per_image"] is not None
    assert rows["onnx", "fp32"]["parity"] is True and rows["onnx", "fp32"]["min_cosine"] >= PARITY
    # int8 against fp32 measures quantisation: reported, not judged.
    assert rows["onnx", "int8"]["parity"] is None and 0.9 < rows["onnx", "int8"]["min_cosine"] < 1.0


def test_models_export_writes_the_layout_pull_installs(tiny_export, tmp_path):
    checkpoint, _ = tiny_export
    home, out = tmp_path / "data", tmp_path / "exported"
    exported = runner.invoke(app, ["--data-dir", str(home), "models", "export", MODEL_ID, "--from", str(checkpoint),
                                   "--out", str(out), "--int8"])
    assert exported.exit_code == 0, exported.output
    assert (out / "visual" / "model_int8.onnx").is_file() and (out / "textual" / "model_int8.onnx").is_file()
    pulled = runner.invoke(app, ["--data-dir", str(home), "models", "pull", MODEL_ID, "--from", str(out)])
    assert pulled.exit_code == 0, pulled.output
    embedder = load_image_text_embedder(get_spec(MODEL_ID), Settings(home=home, threads=1), dtype="fp32")
    assert embedder.embed_texts(["a photo of a cat", "a dog"]).shape == (2, 24)


def test_pull_from_a_flattened_folder_cannot_mix_up_the_two_model_onnx(tiny_export, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for path in tiny_export[1].rglob("*"):
        if path.is_file():
            shutil.copy2(path, flat / path.name)  # textual/model.onnx overwrites visual/model.onnx
    result = runner.invoke(app, ["--data-dir", str(tmp_path / "data"), "models", "pull", MODEL_ID, "--from", str(flat)])
    assert result.exit_code == 2
    assert "visual/model.onnx" in result.output and "textual/model.onnx" in result.output
