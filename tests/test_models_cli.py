"""`memesearch models list|pull|check` and `memesearch caption`, through the real CLI."""

from __future__ import annotations

import gzip
import json

import pytest
from PIL import Image
from typer.testing import CliRunner

from memesearch.cli import app
from memesearch.ml.registry import get_spec
from tests.hub_server import FakeHub

runner = CliRunner()
FLORENCE_REVISION = "21d4c6b8e277c8bdbd1159a0b5295e7c966b3b15"


def squash(text: str) -> str:
    """Rich wraps long lines (even URLs); compare without any whitespace."""
    return "".join(text.split())


def run(home, *args: str, env: dict | None = None):
    return runner.invoke(app, ["--data-dir", str(home), *args], env=env)


@pytest.fixture
def home(tmp_path):
    return tmp_path / "data"


@pytest.fixture
def no_hub_env(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_ENDPOINT", raising=False)


def test_caption_json_with_the_fake_model(home, tmp_path):
    picture = tmp_path / "meme.png"
    Image.new("RGB", (120, 60), (240, 220, 50)).save(picture)
    result = run(home, "caption", str(picture), "--model", "fake", "--json")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert set(payload) == {"model", "backend", "text", "ms"}
    assert payload["model"] == "fake" and payload["backend"] == "fake"
    assert payload["text"].startswith("a mostly yellow wide meme, 120x60 pixels")
    # Deterministic: the same image gives the same text.
    again = json.loads(run(home, "caption", str(picture), "--model", "fake", "--json").stdout)
    assert again["text"] == payload["text"]


def test_caption_per_run_overrides(home, tmp_path):
    picture = tmp_path / "meme.png"
    Image.new("RGB", (40, 40), (0, 0, 0)).save(picture)
    result = run(home, "caption", str(picture), "--model", "fake", "--max-new-tokens", "3", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["text"] == "a mostly black"
    refused = run(home, "caption", str(picture), "--model", "florence-2-base", "--language", "de")
    assert refused.exit_code == 2
    assert "alwaysanswersinEnglish" in squash(refused.output)


def test_caption_with_no_working_backend_exits_2_with_the_reasons(home, tmp_path, monkeypatch):
    monkeypatch.delenv("MEMESEARCH_OPENAI_API_KEY", raising=False)
    picture = tmp_path / "meme.png"
    Image.new("RGB", (32, 32)).save(picture)
    result = run(home, "caption", str(picture), "--model", "openai")
    assert result.exit_code == 2
    assert "MEMESEARCH_OPENAI_API_KEY" in squash(result.output)


def test_models_list_json_shows_default_files_and_backend(home):
    result = run(home, "models", "list", "--json")
    assert result.exit_code == 0, result.output
    models = {row["id"]: row for row in json.loads(result.stdout)["models"]}
    assert models["smolvlm-256m"]["default"] is True
    assert models["fake"]["backend"] == "fake"
    assert models["openai"]["files"] == "-"
    assert models["florence-2-base"]["files"].startswith("0/")


def test_models_list_table(home):
    result = run(home, "models", "list")
    assert result.exit_code == 0, result.output
    assert "florence-2-base" in result.output and "moondream2" in result.output


@pytest.mark.timeout(10)
def test_pull_with_hf_hub_offline_fails_fast_naming_files_and_from(home, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    result = run(home, "models", "pull", "florence-2-base")
    assert result.exit_code == 2
    text = squash(result.output)
    assert squash(f"https://huggingface.co/onnx-community/Florence-2-base-ft/resolve/{FLORENCE_REVISION}/onnx/vision_encoder.onnx") in text
    assert "HF_HUB_OFFLINE" in text
    assert squash("memesearch models pull florence-2-base --from FOLDER") in text


@pytest.mark.timeout(10)
@pytest.mark.parametrize("model_id, repo, names", [
    ("moondream2", "vikhyatk/moondream2", ["moondream-0_5b-int8.mf.gz"]),
    # The second CLIP: Immich's layout, every file named at the pinned commit.
    ("clip-vit-b-16", "immich-app/ViT-B-16__openai",
     ["config.json", "visual/model.onnx", "visual/preprocess_cfg.json", "textual/model.onnx", "textual/tokenizer.json"]),
])
def test_pull_with_unreachable_endpoint_fails_fast(home, no_hub_env, monkeypatch, model_id, repo, names):
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    result = run(home, "models", "pull", model_id)
    assert result.exit_code == 2
    text = squash(result.output)
    assert "127.0.0.1:9isunreachable" in text
    revision = get_spec(model_id).sources.onnx.revision
    for name in names:
        assert squash(f"http://127.0.0.1:9/{repo}/resolve/{revision}/{name}") in text
    assert squash(f"memesearch models pull {model_id} --from FOLDER") in text


def test_pull_from_dir_copies_the_required_files(home, tmp_path):
    from memesearch.ml.model_files import required_files

    spec = get_spec("florence-2-base")
    names = required_files(spec, "fp32")
    source = tmp_path / "manual"
    for index, name in enumerate(names):
        # Half keep their sub-folders, half were saved flat by a browser.
        target = source / name if index % 2 else source / name.split("/")[-1]
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f"content of {name}".encode())
    result = run(home, "models", "pull", "florence-2-base", "--dtype", "fp32", "--from", str(source))
    assert result.exit_code == 0, result.output
    installed = home / "models" / "florence-2-base"
    for name in names:
        assert (installed / name).read_bytes() == f"content of {name}".encode()
    listed = {row["id"]: row for row in json.loads(run(home, "models", "list", "--json").stdout)["models"]}
    assert listed["florence-2-base"]["files"].startswith(f"{len(names)}/{len(names)}")


def test_pull_from_dir_unpacks_gz_bundles(home, tmp_path):
    source = tmp_path / "manual"
    source.mkdir()
    with gzip.open(source / "moondream-0_5b-int8.mf.gz", "wb") as packed:
        packed.write(b"MOON bundle bytes")
    result = run(home, "models", "pull", "moondream2", "--from", str(source))
    assert result.exit_code == 0, result.output
    assert (home / "models" / "moondream2" / "moondream-0_5b-int8.mf").read_bytes() == b"MOON bundle bytes"
    assert (source / "moondream-0_5b-int8.mf.gz").exists()  # the user's copy is left alone


def test_pull_from_dir_with_a_wrong_name_says_which(home, tmp_path):
    source = tmp_path / "manual"
    source.mkdir()
    (source / "moondream-0_5b-int8.mf.gz.download").write_bytes(b"half")
    result = run(home, "models", "pull", "moondream2", "--from", str(source))
    assert result.exit_code == 2
    text = squash(result.output)
    assert "moondream-0_5b-int8.mf" in text
    assert "wrongname?" in text


def test_pull_unknown_dtype_is_refused(home):
    result = run(home, "models", "pull", "smolvlm-256m", "--dtype", "int3")
    assert result.exit_code == 2
    assert "int3" in result.output


def test_check_reports_every_model_and_backend_in_the_documented_shape(home, monkeypatch):
    monkeypatch.delenv("MEMESEARCH_OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    result = run(home, "models", "check", "--json")
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["results"]
    keys = {"model", "family", "backend", "dtype", "available", "loads", "parity", "tokens_compared", "ms_per_image", "error",
            "min_cosine"}
    assert all(set(row) == keys for row in rows)
    by_key = {(row["model"], row["backend"], row["dtype"]): row for row in rows}
    clip = by_key["clip-vit-b-32", "onnx", "int8"]  # visual search: same row shape, not downloaded
    assert clip["family"] == "clip" and clip["available"] is False and "models pull clip-vit-b-32" in clip["error"]
    b16 = by_key["clip-vit-b-16", "onnx", "int8"]
    assert b16["family"] == "clip" and b16["available"] is False and "models pull clip-vit-b-16" in b16["error"]
    fake = by_key["fake", "fake", "none"]
    assert fake["available"] and fake["loads"] and fake["ms_per_image"] is not None
    missing = by_key["smolvlm-256m", "onnx", "int8"]
    assert missing["available"] is False and "memesearch models pull smolvlm-256m" in missing["error"]
    assert by_key["openai", "api", "remote"]["available"] is False


HUB_REVISION = "0123456789abcdef0123456789abcdef01234567"
HUB_MODEL = f"""
models:
  hub-test:
    family: smolvlm
    prompt: Describe.
    backends: [onnx]
    sources:
      onnx:
        repo: org/hub-test
        revision: {HUB_REVISION}
        dtypes: {{fp32: {{}}, int8: {{}}}}
        files:
          fp32: [onnx/model.onnx, weights.mf.gz]
          int8: [onnx/model_int8.onnx]
"""


def test_pull_downloads_only_the_dtype_files_at_the_pinned_revision(home, no_hub_env, monkeypatch):
    hub = FakeHub(
        "org/hub-test",
        HUB_REVISION,
        {"onnx/model.onnx": b"graph", "weights.mf.gz": gzip.compress(b"unpacked weights"), "onnx/model_int8.onnx": b"q"},
    )
    try:
        home.mkdir(parents=True)
        (home / "models.yml").write_text(HUB_MODEL)
        monkeypatch.setenv("HF_ENDPOINT", hub.url)
        result = run(home, "models", "pull", "hub-test")
    finally:
        hub.close()
    assert result.exit_code == 0, result.output
    installed = home / "models" / "hub-test"
    assert (installed / "onnx" / "model.onnx").read_bytes() == b"graph"
    assert (installed / "weights.mf").read_bytes() == b"unpacked weights"
    assert not (installed / "weights.mf.gz").exists()
    assert not (installed / "onnx" / "model_int8.onnx").exists()  # another dtype: not fetched
    fetched = {path for path, _ in hub.gets()}
    assert fetched == {
        f"/org/hub-test/resolve/{HUB_REVISION}/onnx/model.onnx",
        f"/org/hub-test/resolve/{HUB_REVISION}/weights.mf.gz",
    }
