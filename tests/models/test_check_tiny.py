"""`memesearch models check --tiny --json`: every family's ONNX export agrees with PyTorch."""

from __future__ import annotations

import importlib.util
import json

import pytest

pytest.importorskip("torch")  # the tiny checkpoints and the reference are PyTorch

from typer.testing import CliRunner  # noqa: E402

from memesearch.cli import app  # noqa: E402
from memesearch.ml.check import ALL_FAMILIES, FAMILIES, check_tiny_family  # noqa: E402
from memesearch.ml.families import FAMILY_MODULES  # noqa: E402

pytestmark = pytest.mark.slow


def family_present(family: str) -> bool:
    return all(importlib.util.find_spec(f"memesearch.ml.families.{family}.{FAMILY_MODULES[kind]}")
               for kind in ("tiny", "export", "onnx"))


def test_check_tiny_json_compares_onnx_with_the_reference(tmp_path, monkeypatch):
    monkeypatch.setenv("MEMESEARCH_THREADS", "1")
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "models", "check", "--tiny", "--tokens", "12", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.stdout)["results"]
    by_key = {(row["family"], row["backend"], row["dtype"]): row for row in rows}
    assert set(by_key) == {(f, b, d) for f in ALL_FAMILIES for b, d in (("torch", "fp32"), ("onnx", "fp32"), ("onnx", "int8"))} | {
        ("smolvlm", "onnx", "q4"), ("smolvlm", "onnx", "int8-per-row")}
    # clip compares embeddings: cosine >= 0.9999 with transformers (fp32) and with its int8 emulation (int8).
    clip_reference, *clip_onnx = (by_key["clip", b, d] for b, d in (("torch", "fp32"), ("onnx", "fp32"), ("onnx", "int8")))
    assert clip_reference["loads"] and clip_reference["ms_per_image"] is not None, clip_reference
    for row in clip_onnx:
        assert row["loads"] and row["parity"] is True and row["min_cosine"] >= 0.9999 and row["error"] is None, row
    for family in FAMILIES:
        reference, fp32, int8 = by_key[family, "torch", "fp32"], by_key[family, "onnx", "fp32"], by_key[family, "onnx", "int8"]
        if not family_present(family):
            assert not fp32["available"] and "not available" in fp32["error"]
            continue
        assert reference["loads"] and reference["tokens_compared"] > 0, reference
        # fp32 must agree token for token; int8 is compared (with the int8 reference, whose
        # agreement tests/models/test_int8_reference.py measures) but may differ.
        assert fp32["loads"] and fp32["parity"] is True, fp32
        assert fp32["tokens_compared"] >= reference["tokens_compared"]
        assert int8["loads"] and int8["error"] is None and int8["tokens_compared"] > 0, int8
        assert int8["parity"] is not None, int8
    # SmolVLM's 4-bit and per-row int8 decoders are compared with their own references
    # (tests/models/test_int8_reference.py).
    for dtype in ("q4", "int8-per-row"):
        row = by_key["smolvlm", "onnx", dtype]
        assert row["loads"] and row["error"] is None and row["tokens_compared"] > 0 and row["parity"] is not None, row


def test_int8_rows_are_compared_with_the_int8_reference(tmp_path, monkeypatch):
    """fp32 rows keep the fp32 reference; int8 rows use int8_reference.reference_generate."""
    from memesearch.ml.families.common import int8_reference

    monkeypatch.setenv("MEMESEARCH_THREADS", "1")
    family = "moondream"  # the quickest tiny family
    asked = []

    def fake_reference(*args):
        asked.append(args[0])
        return [[-1]]  # no captioner produces this, so parity must come out False

    monkeypatch.setattr(int8_reference, "reference_generate", fake_reference)
    rows = {(row.backend, row.dtype): row for row in check_tiny_family(family, tmp_path, tokens=6)}
    assert asked == [family]
    assert rows["onnx", "fp32"].parity is True, rows["onnx", "fp32"]
    assert rows["onnx", "int8"].parity is False and rows["onnx", "int8"].error is None, rows["onnx", "int8"]


def test_a_family_without_code_is_reported_not_fatal(tmp_path):
    rows = check_tiny_family("no-such-family", tmp_path)
    assert [row.available for row in rows] == [False, False, False]
    assert all("memesearch.ml.families.no-such-family.tiny" in row.error for row in rows)
    assert not any(row.failed for row in rows)


# Registry model, dtype, and (for moondream, whose tiny bundle has its own name) a models.yml override.
PULL_CASES = {
    "smolvlm": ("smolvlm-256m", "int8", ""),
    "florence2": ("florence-2-base", "fp32", ""),
    "moondream": ("moondream2", "int8", "models:\n  moondream2:\n    sources:\n      onnx:\n        files: {int8: [moondream-tiny-int8.mf]}\n"),
}


@pytest.mark.parametrize("family", FAMILIES)
def test_exported_files_install_with_pull_from_and_caption_through_the_chain(family, tmp_path, monkeypatch):
    """The export layout, required_files, `pull --from` and the chain fit together."""
    import importlib

    from PIL import Image

    monkeypatch.setenv("MEMESEARCH_THREADS", "1")
    tiny = importlib.import_module(f"memesearch.ml.families.{family}.tiny")
    export = importlib.import_module(f"memesearch.ml.families.{family}.export")
    model_id, dtype, override = PULL_CASES[family]
    home = tmp_path / "data"
    home.mkdir()
    if override:
        (home / "models.yml").write_text(override)
    exported = export.export(tiny.build_tiny_checkpoint(tmp_path / "ckpt"), tmp_path / "export", int8=True)
    runner = CliRunner()
    pulled = runner.invoke(app, ["--data-dir", str(home), "models", "pull", model_id, "--dtype", dtype, "--from", str(exported)])
    assert pulled.exit_code == 0, pulled.output
    picture = tmp_path / "meme.png"
    Image.new("RGB", (80, 60), (30, 120, 200)).save(picture)
    captioned = runner.invoke(
        app, ["--data-dir", str(home), "caption", str(picture), "--model", model_id, "--backend", "onnx", "--json"]
    )
    assert captioned.exit_code == 0, captioned.output
    payload = json.loads(captioned.stdout)
    assert payload["model"] == model_id and payload["backend"] == "onnx"
    assert isinstance(payload["text"], str)


def test_installed_check_compares_onnx_with_the_torch_backend(tmp_path, monkeypatch):
    """`models check` (no --tiny) on tiny models installed as smolvlm-256m / florence-2-base."""
    import importlib
    import shutil

    monkeypatch.setenv("MEMESEARCH_THREADS", "1")
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing may come from the hub
    monkeypatch.delenv("MEMESEARCH_OPENAI_API_KEY", raising=False)
    home = tmp_path / "data"
    runner = CliRunner()
    for family, model_id in (("smolvlm", "smolvlm-256m"), ("florence2", "florence-2-base")):
        tiny = importlib.import_module(f"memesearch.ml.families.{family}.tiny")
        export = importlib.import_module(f"memesearch.ml.families.{family}.export")
        checkpoint = tiny.build_tiny_checkpoint(tmp_path / f"ckpt-{family}")
        exported = export.export(checkpoint, tmp_path / f"onnx-{family}", int8=True)
        for dtype in ("fp32", "int8"):
            pulled = runner.invoke(app, ["--data-dir", str(home), "models", "pull", model_id, "--dtype", dtype, "--from", str(exported)])
            assert pulled.exit_code == 0, pulled.output
        # A checkpoint in <models>/<id>/torch is what the torch backend loads instead of the hub repo.
        shutil.copytree(checkpoint, home / "models" / model_id / "torch")
    result = runner.invoke(app, ["--data-dir", str(home), "models", "check", "--tokens", "8", "--json"])
    assert result.exit_code == 0, result.output
    rows = {(r["model"], r["backend"], r["dtype"]): r for r in json.loads(result.stdout)["results"]}
    for model_id in ("smolvlm-256m", "florence-2-base"):
        torch_row, fp32, int8 = rows[model_id, "torch", "fp32"], rows[model_id, "onnx", "fp32"], rows[model_id, "onnx", "int8"]
        assert torch_row["loads"] and torch_row["tokens_compared"] > 0, torch_row
        assert fp32["parity"] is True and fp32["tokens_compared"] >= torch_row["tokens_compared"], fp32
        assert int8["loads"] and int8["parity"] is not None, int8
    assert rows["moondream2", "onnx", "int8"]["available"] is False
