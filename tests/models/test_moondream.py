"""Moondream: our .mf reader and ONNX captioner against a tiny random Moondream.

The tiny model's torch modules are exported into a bundle with the real component
names; the captioner's tokens must equal the greedy tokens computed by the same torch
modules (memesearch.ml.families.moondream.tiny.reference_generate) token for token.
"""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest
from PIL import Image

from memesearch.errors import ModelUnavailableError
from memesearch.ml.base import CaptionRequest
from memesearch.ml.families.moondream.export import write_bundle
from memesearch.ml.families.moondream.onnx_backend import OnnxMoondreamCaptioner, read_bundle, required_files
from memesearch.ml.families.moondream.bundle import read_entries
from memesearch.ml.families.moondream.preprocess import choose_grid, make_crops, merge_crop_features

pytestmark = pytest.mark.slow
MAX_NEW = 16


def _image(width: int, height: int, seed: int) -> Image.Image:
    """Smooth gradients plus noise: resizing such images exercises real interpolation."""
    rng = np.random.default_rng(seed)
    ys, xs = np.mgrid[0:height, 0:width]
    base = np.stack([xs * 255 / width, ys * 255 / height, (xs + ys) * 127 / (width + height)], axis=-1)
    noisy = base + rng.normal(0, 40, size=base.shape)
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    torch = pytest.importorskip("torch")
    torch.set_num_threads(1)
    from memesearch.ml.families.moondream.export import export
    from memesearch.ml.families.moondream.tiny import build_tiny_checkpoint

    root = tmp_path_factory.mktemp("moondream")
    checkpoint = build_tiny_checkpoint(root / "checkpoint", seed=0)
    bundles = export(checkpoint, root / "bundles", int8=True)
    return checkpoint, bundles


@pytest.fixture(scope="module")
def captioner(tiny):
    return OnnxMoondreamCaptioner(tiny[1] / "moondream-tiny-fp32.mf", dtype="fp32", threads=1)


def _reference(tiny, images, prompt="short", max_new_tokens=MAX_NEW):
    from memesearch.ml.families.moondream.tiny import reference_generate

    return reference_generate(tiny[0], images, prompt, max_new_tokens)


# -- generation parity -------------------------------------------------------------------
def test_one_image_matches_reference_token_for_token(tiny, captioner):
    image = _image(60, 40, seed=1)  # below 1.4 x crop: global crop only
    [result] = captioner.caption([CaptionRequest(image=image, prompt="short", max_new_tokens=MAX_NEW)])
    [expected] = _reference(tiny, [image])
    assert result.token_ids == expected
    assert len(expected) > 3 and len(set(expected)) > 2  # the tiny model really says something varied
    assert result.text == captioner.tokenizer.decode(expected).strip()
    assert result.backend == "onnx"


def test_two_different_images_match_reference(tiny, captioner):
    images = [_image(200, 100, seed=2), _image(150, 150, seed=3)]  # 1x2 and 2x2 tiles
    assert [choose_grid(*im.size, crop_size=captioner.crop_size) for im in images] == [(1, 2), (2, 2)]
    results = captioner.caption([CaptionRequest(image=im, prompt="short", max_new_tokens=MAX_NEW) for im in images])
    expected = _reference(tiny, images)
    assert [r.token_ids for r in results] == expected
    assert expected[0] != expected[1]


@pytest.mark.parametrize("prompt", ["normal", "What is written on this meme?"])
def test_caption_and_query_templates_match_reference(tiny, captioner, prompt):
    image = _image(100, 180, seed=4)  # 2x1 tiles
    assert captioner.generate(image, prompt, MAX_NEW) == _reference(tiny, [image], prompt)[0]


def test_prompt_ids_follow_the_bundle_templates(tiny, captioner):
    config = json.loads((tiny[0] / "config.json").read_text())
    assert captioner.prompt_ids("short") == config["templates"]["caption"]["short"]
    question_ids = captioner.tokenizer.encode("Who?").ids
    query = config["templates"]["query"]
    assert captioner.prompt_ids("Who?") == query["prefix"] + question_ids + query["suffix"]


def test_max_new_tokens_and_eos_stop_generation(tiny, captioner, tmp_path):
    image = _image(60, 40, seed=1)
    [full] = _reference(tiny, [image], max_new_tokens=12)
    assert captioner.generate(image, "short", 3) == full[:3]
    # Declare the 4th generated token the end-of-sequence token: generation must stop before it.
    stop = full[3]
    entries = read_entries(tiny[1] / "moondream-tiny-fp32.mf")
    config = json.loads(entries["config.json"])
    config["special_tokens"]["eos"] = stop
    entries["config.json"] = json.dumps(config).encode()
    bundle = write_bundle(entries, tmp_path / "moondream-tiny-fp32.mf")
    stopped = OnnxMoondreamCaptioner(bundle, dtype="fp32", threads=1).generate(image, "short", 12)
    assert stopped == full[: full.index(stop)]


def test_int8_bundle_loads_and_mostly_agrees(tiny, captioner):
    import onnx

    quantized = OnnxMoondreamCaptioner(tiny[1], dtype="int8", threads=1)  # found inside the folder
    decoder = onnx.load_from_string(read_bundle(tiny[1] / "moondream-tiny-int8.mf").graphs["text_decoder"])
    decoder_ops = {node.op_type for node in decoder.graph.node}
    assert "DynamicQuantizeLinear" in decoder_ops or "MatMulInteger" in decoder_ops
    images = [_image(60, 40, seed=1), _image(150, 150, seed=3)]
    agreement = []
    for image in images:
        reference = captioner.generate(image, "short", MAX_NEW)
        got = quantized.generate(image, "short", MAX_NEW)
        assert got and all(0 <= token < quantized.tokenizer.get_vocab_size() for token in got)
        agreement.append(sum(a == b for a, b in zip(got, reference)) / max(len(reference), 1))
    print(f"int8 vs fp32 token agreement per image: {agreement}")


# -- other sizes, and weights kept beside the graph ---------------------------------------
def test_other_sizes_export_and_match_reference(tmp_path):
    """Sizes are parameters: more layers, partial rotary, a bigger vocabulary, other crops."""
    pytest.importorskip("torch")
    import onnx

    from memesearch.ml.families.moondream.export import export
    from memesearch.ml.families.moondream.tiny import TINY, build_checkpoint, reference_generate

    cfg = TINY | dict(crop_size=42, vision_layers=3, vision_mlp=64, text_layers=3, text_mlp=80, rotary_dim=6,
                      vocab_size=400)
    checkpoint = build_checkpoint(tmp_path / "ckpt", cfg, seed=1)
    bundle = read_bundle(export(checkpoint, tmp_path / "bundles", name="moondream-other") / "moondream-other-fp32.mf")
    assert bundle.initial_kv_cache.shape == (3, 2, 1, 4, 1, 12)  # (layers, k/v, batch, heads, BOS, head_dim)
    vision = onnx.load_from_string(bundle.graphs["vision_encoder"])
    assert sum(node.op_type == "LayerNormalization" for node in vision.graph.node) == 2 * 3 + 1
    other = OnnxMoondreamCaptioner(bundle.path, dtype="fp32", threads=1)
    other.ensure_loaded()
    assert other.crop_size == 42
    (logits,) = other.text_decoder.run(["logits"], {"input_embeds": other._embed([1]), "kv_cache": other.initial_kv_cache})
    assert logits.shape == (1, 400)
    for image in (_image(60, 40, seed=1), _image(150, 150, seed=3)):
        [expected] = reference_generate(checkpoint, [image], "short", MAX_NEW)
        assert len(expected) > 3 and other.generate(image, "short", MAX_NEW) == expected


def test_decoder_weights_beside_the_bundle_give_the_same_tokens(tiny, captioner, tmp_path, monkeypatch):
    """How a graph over protobuf's 2 GiB (the full-size fp32 decoder) is stored and found."""
    import onnx

    from memesearch.ml.families.moondream.export import gather_external_data

    entries = read_entries(tiny[1] / "moondream-tiny-fp32.mf")
    split = tmp_path / "split"
    split.mkdir()
    # One file per tensor, as torch.onnx.export writes a model over 2 GiB.
    onnx.save_model(onnx.load_from_string(entries["text_decoder.onnx"]), str(split / "text_decoder.onnx"),
                    save_as_external_data=True, all_tensors_to_one_file=False, size_threshold=0)
    assert len(list(split.iterdir())) > 10
    folder = tmp_path / "bundle"
    folder.mkdir()
    graph = gather_external_data(split / "text_decoder.onnx", folder / "weights.data")
    initializers = onnx.load_from_string(graph).graph.initializer
    assert all(t.data_location == onnx.TensorProto.EXTERNAL and not t.raw_data for t in initializers)
    assert all(int({e.key: e.value for e in t.external_data}["offset"]) % 65536 == 0 for t in initializers)
    entries["text_decoder.onnx"] = graph
    write_bundle(entries, folder / "moondream-tiny-fp32.mf")
    monkeypatch.chdir(tmp_path)  # not the bundle folder: the weights must be found beside the bundle
    image = _image(150, 150, seed=3)
    beside = OnnxMoondreamCaptioner(folder, dtype="fp32", threads=1)
    assert beside.generate(image, "short", MAX_NEW) == captioner.generate(image, "short", MAX_NEW)


# -- preprocessing parity at the real crop size ----------------------------------------
@pytest.mark.parametrize("size", [(300, 200), (1200, 500), (500, 1000), (900, 800), (529, 529)])
def test_crops_equal_reference_preprocessing(size):
    pytest.importorskip("torch")
    from memesearch.ml.families.moondream.tiny import reference_crops

    image = _image(*size, seed=sum(size))
    ours, grid = make_crops(image, 378)
    expected, expected_grid = reference_crops(image, 378)
    assert grid == expected_grid
    assert ours.dtype == np.float16 and ours.shape == (1 + (grid[0] * grid[1] if grid != (1, 1) else 0), 3, 378, 378)
    assert np.array_equal(ours.view(np.uint16), expected.numpy().view(np.uint16))  # bit for bit


@pytest.mark.parametrize("grid", [(1, 1), (1, 2), (2, 1), (2, 2)])
def test_feature_merge_equals_reference(grid):
    torch = pytest.importorskip("torch")
    from memesearch.ml.families.moondream.tiny import reference_merge

    crops = 1 if grid == (1, 1) else 1 + grid[0] * grid[1]
    features = np.random.default_rng(5).normal(size=(crops, 729, 8)).astype(np.float16)
    ours = merge_crop_features(features, grid)
    expected = reference_merge(torch.from_numpy(features), grid).numpy()
    assert ours.shape == (729, 16)
    assert np.array_equal(ours.view(np.uint16), expected.view(np.uint16))


# -- bundle reading and errors -----------------------------------------------------------
def _minimal_entries() -> dict:
    return {"config.json": {"special_tokens": {"eos": 0}, "templates": {}}, "tokenizer.json": "{}",
            "initial_kv_cache.npy": np.zeros((1, 2, 1, 1, 1, 2), np.float16),
            **{f"{name}.onnx": b"graph" for name in
               ("vision_encoder", "vision_projection", "text_encoder", "text_decoder")}}


def test_gzipped_bundle_reads_like_the_plain_one(tmp_path):
    plain = write_bundle(_minimal_entries(), tmp_path / "a.mf")
    zipped = write_bundle(_minimal_entries(), tmp_path / "b.mf.gz")
    assert read_entries(plain) == read_entries(zipped)
    assert gzip.open(zipped).read(4) == b"MOON"
    bundle = read_bundle(zipped)
    assert set(bundle.graphs) == {"vision_encoder", "vision_projection", "text_encoder", "text_decoder"}
    assert bundle.initial_kv_cache.shape == (1, 2, 1, 1, 1, 2) and bundle.eos_id == 0


@pytest.mark.parametrize("cut, message", [(3, "not a moondream .mf file"), (7, "entry header"),
                                          (40, "file ends inside"), (-5, "file ends inside entry")])
def test_truncated_bundle_is_a_clear_error(tmp_path, cut, message):
    data = write_bundle(_minimal_entries(), tmp_path / "full.mf").read_bytes()
    broken = tmp_path / "moondream-x-int8.mf"
    broken.write_bytes(data[:cut])
    with pytest.raises(ModelUnavailableError, match=message) as caught:
        read_bundle(broken)
    assert str(broken) in str(caught.value) and "download it again" in str(caught.value)


def test_truncated_gzip_and_bad_version_and_missing_entry(tmp_path):
    data = write_bundle(_minimal_entries(), tmp_path / "full.mf.gz").read_bytes()
    (tmp_path / "cut.mf.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelUnavailableError, match="moondream bundle"):
        read_bundle(tmp_path / "cut.mf.gz")
    (tmp_path / "v2.mf").write_bytes(b"MOON\x02")
    with pytest.raises(ModelUnavailableError, match="format version 2"):
        read_bundle(tmp_path / "v2.mf")
    entries = _minimal_entries()
    del entries["text_decoder.onnx"]
    with pytest.raises(ModelUnavailableError, match=r"missing entries \['text_decoder'\]"):
        read_bundle(write_bundle(entries, tmp_path / "partial.mf"))


def test_corrupt_graph_fails_at_load_with_its_name(tiny, tmp_path):
    entries = read_entries(tiny[1] / "moondream-tiny-fp32.mf")
    graph = entries["vision_projection.onnx"]
    entries["vision_projection.onnx"] = graph[: len(graph) // 2]  # a half-written graph
    folder = tmp_path / "models"
    write_bundle(entries, folder / "moondream-tiny-fp32.mf")
    broken = OnnxMoondreamCaptioner(folder, dtype="fp32", threads=1)
    with pytest.raises(ModelUnavailableError, match="vision_projection") as caught:
        broken.ensure_loaded()
    assert "corrupt" in str(caught.value)


def test_missing_bundle_names_what_to_download(tmp_path):
    with pytest.raises(ModelUnavailableError, match=r"no moondream-\*-int8.mf\(.gz\) bundle") as caught:
        OnnxMoondreamCaptioner(tmp_path, dtype="int8").ensure_loaded()
    assert "moondream-0_5b-int8.mf.gz" in str(caught.value)


def test_required_files():
    assert required_files("int8") == ["moondream-0_5b-int8.mf.gz"]
    assert required_files("int4", variant="2b") == ["moondream-2b-int4.mf.gz"]
    with pytest.raises(ModelUnavailableError, match="int8"):  # the type every family raises
        required_files("fp32")


# -- torch backend: only its failure can be checked offline ------------------------------
def test_torch_backend_without_weights_fails_clearly(monkeypatch, tmp_path):
    pytest.importorskip("transformers")
    from memesearch.ml.families.moondream.torch_backend import PINNED_REVISION, TorchMoondreamCaptioner

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    captioner = TorchMoondreamCaptioner()
    with pytest.raises(ModelUnavailableError, match="vikhyatk/moondream2") as caught:
        captioner.caption([CaptionRequest(image=_image(32, 32, 0), prompt="short")])
    assert PINNED_REVISION in str(caught.value) and "onnx backend" in str(caught.value)
