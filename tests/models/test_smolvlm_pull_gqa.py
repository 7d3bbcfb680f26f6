"""Pulled SmolVLM models get the GroupQueryAttention decoder (smolvlm/derive_decoder.py), offline.

A tiny Idefics3 checkpoint stands in for HuggingFace's: our exporter writes its community
layout with the traced decoder (``gqa=False``, what the community download holds) and
``models pull --from`` installs it with the checkpoint's ``model.safetensors``; the pull must
derive ``onnx/decoder_gqa*.onnx`` from the safetensors alone and the captioner must run it.
"""

from __future__ import annotations

import hashlib
import logging
import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
onnx = pytest.importorskip("onnx")
pytest.importorskip("onnxruntime")

from onnx import numpy_helper  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from memesearch.cli import app  # noqa: E402
from memesearch.ml.base import CaptionRequest  # noqa: E402
from memesearch.ml.check_rows import fixed_image  # noqa: E402
from memesearch.ml.families.smolvlm import onnx_backend  # noqa: E402
from memesearch.ml.families.smolvlm.assets import onnx_path  # noqa: E402
from memesearch.ml.families.smolvlm.derive_decoder import CHECKPOINT, TextWeights, gqa_decoder_file  # noqa: E402
from memesearch.ml.families.smolvlm.export import export  # noqa: E402
from memesearch.ml.families.smolvlm.tiny import TINY_PROMPT, build_tiny_checkpoint, reference_generate  # noqa: E402
from memesearch.ml.onnx_runtime.quantize import per_row_matmuls  # noqa: E402
from memesearch.ml.registry import get_spec  # noqa: E402
from memesearch.ml.onnx_runtime.row_exact import matmul_nbits_rows_independent  # noqa: E402

pytestmark = pytest.mark.slow

MODEL = "smolvlm-256m"
TOKENS = 12


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    return build_tiny_checkpoint(tmp_path_factory.mktemp("ckpt"), seed=3)


@pytest.fixture(scope="module")
def community(checkpoint, tmp_path_factory):
    """The community download's stand-in (traced decoders) plus the checkpoint, as a --from folder."""
    folder = export(checkpoint, tmp_path_factory.mktemp("community"), int8=True, gqa=False)
    shutil.copyfile(checkpoint / CHECKPOINT, folder / CHECKPOINT)
    return folder


def pull(home, source, dtype: str):
    result = CliRunner().invoke(app, ["--data-dir", str(home), "models", "pull", MODEL, "--dtype", dtype,
                                      "--from", str(source)])
    assert result.exit_code == 0, result.output
    return home / "models" / MODEL, " ".join(result.output.split())


def caption(model_dir, dtype: str):
    captioner = onnx_backend.OnnxSmolVLMCaptioner(model_dir, dtype=dtype, threads=1)
    request = CaptionRequest(image=fixed_image(), prompt=TINY_PROMPT, max_new_tokens=TOKENS)
    return captioner, list(captioner.caption([request])[0].token_ids)


def digest(path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_fp32_pull_derives_the_gqa_decoder_and_matches_transformers(checkpoint, community, tmp_path):
    model_dir, output = pull(tmp_path / "home", community, "fp32")
    derived = model_dir / gqa_decoder_file("fp32")
    assert derived.is_file()
    assert f"decoder: GroupQueryAttention ({gqa_decoder_file('fp32')})" in output
    from memesearch.ml.download import status
    from memesearch.ml.registry import get_spec

    files = status(get_spec(MODEL), tmp_path / "home" / "models", "fp32")
    assert CHECKPOINT in files.present and files.decoder == f"decoder: GroupQueryAttention ({gqa_decoder_file('fp32')})"
    # The community files are installed unchanged.
    for part in ("vision_encoder", "embed_tokens", "decoder_model_merged"):
        assert digest(model_dir / onnx_path(part, "fp32")) == digest(community / onnx_path(part, "fp32"))
    captioner, tokens = caption(model_dir, "fp32")
    assert captioner._gqa and captioner.decoder_file == gqa_decoder_file("fp32")
    assert len(tokens) > 0
    assert tokens == reference_generate(checkpoint, [fixed_image()], TINY_PROMPT, TOKENS)[0]


def test_int8_pull_equals_our_exporters_int8_graph(checkpoint, community, tmp_path, monkeypatch):
    monkeypatch.setenv("MEMESEARCH_THREADS", "1")
    model_dir, output = pull(tmp_path / "home", community, "int8")
    derived = model_dir / gqa_decoder_file("int8")
    assert f"decoder: GroupQueryAttention ({gqa_decoder_file('int8')})" in output
    assert not (model_dir / gqa_decoder_file("fp32")).exists()  # only the chosen dtype is derived
    # `models list` (which shows the default dtype, int8) names the decoder in one line.
    listed = CliRunner().invoke(app, ["--data-dir", str(tmp_path / "home"), "models", "list"])
    assert f"{MODEL} decoder: GroupQueryAttention ({gqa_decoder_file('int8')})" in " ".join(listed.output.split())
    from memesearch.config import Settings
    from memesearch.web.models_info import model_rows

    row = next(r for r in model_rows(Settings(home=tmp_path / "home")) if r["id"] == MODEL)  # the Models page's
    assert row["decoder"] == f"decoder: GroupQueryAttention ({gqa_decoder_file('int8')}), per-row int8: describe batches memes"
    # The same quantised weights as the exporter's own int8 GroupQueryAttention decoder.
    # smolvlm-256m's models.yml asks for the per-row int8 decoder.
    assert get_spec(MODEL).sources.onnx.int8_decoder == "per_row"
    exported = export(checkpoint, tmp_path / "ours", int8=True, gqa=True, int8_decoder="per_row")
    ours, pulled = (
        {t.name: numpy_helper.to_array(t) for t in onnx.load(str(path)).graph.initializer}
        for path in (exported / onnx_path("decoder_model_merged", "int8"), derived)
    )
    # 8-bit blocks that quantise activations per row (batches decode exactly), marked as such.
    assert ours.keys() == pulled.keys() and any(name.endswith("_Q8") for name in pulled)
    assert per_row_matmuls({prop.key: prop.value for prop in onnx.load(str(derived), load_external_data=False).metadata_props})
    for name, array in ours.items():
        np.testing.assert_array_equal(pulled[name], array, err_msg=name)
    captioner, tokens = caption(model_dir, "int8")
    assert captioner._gqa and captioner.decoder_file == gqa_decoder_file("int8")
    assert captioner.batches_exactly == matmul_nbits_rows_independent(8, 32, 4)
    # The same tokens as our exporter's int8 model (same weights, same graph: exact on any CPU). Its
    # parity with the int8 reference is test_int8_reference's, over several seeds: one seed alone
    # can flip a near-tied token between CPUs.
    _, exported_tokens = caption(exported, "int8")
    assert len(tokens) > 0 and tokens == exported_tokens

    # models.yml asking for the per-tensor int8 decoder instead: the runtime keeps running the
    # derived one (either is valid, the graph says whether it batches); the next pull derives it as asked.
    from types import SimpleNamespace

    from memesearch.ml.families.smolvlm import derive_decoder

    assert derive_decoder.decoder_choice(model_dir, "int8")[1] is None
    derive_decoder.after_pull(model_dir, "int8", SimpleNamespace(int8_decoder="per_tensor"))
    assert not per_row_matmuls({prop.key: prop.value for prop in onnx.load(str(derived)).metadata_props})
    assert not any(name.endswith("_Q8") for name in (t.name for t in onnx.load(str(derived)).graph.initializer))
    captioner, _ = caption(model_dir, "int8")
    assert captioner.decoder_file == gqa_decoder_file("int8") and not captioner.batches_exactly
    # `models list`, the pull's status and the Models page say so, and how to get the one asked for.
    line = derive_decoder.decoder_line(model_dir, "int8", get_spec(MODEL).sources.onnx)
    assert line.endswith(f"per-tensor int8 (models.yml asks for per_row: `memesearch models pull {MODEL}` derives it)"), line


def test_q4_pull_derives_a_4bit_decoder(community, tmp_path):
    shutil.copytree(community, tmp_path / "source")
    # Our exporter's q4 files stand in for the community q4 ones (same names).
    from memesearch.ml.families.smolvlm.export import quantize_q4

    quantize_q4(tmp_path / "source")
    model_dir, output = pull(tmp_path / "home", tmp_path / "source", "q4")
    ops = {node.op_type for node in onnx.load(str(model_dir / gqa_decoder_file("q4"))).graph.node}
    assert {"MatMulNBits", "GroupQueryAttention"} <= ops and "MatMul" not in ops
    captioner, tokens = caption(model_dir, "q4")
    assert captioner._gqa and len(tokens) > 0


def test_bf16_checkpoint_gives_the_weights_of_its_fp32_upcast(checkpoint, tmp_path):
    model = transformers.Idefics3ForConditionalGeneration.from_pretrained(checkpoint).eval()
    model.to(torch.bfloat16).save_pretrained(tmp_path / "bf16")
    model.to(torch.float32).save_pretrained(tmp_path / "upcast")
    from_bf16 = dict(TextWeights(tmp_path / "bf16" / CHECKPOINT))
    upcast = dict(TextWeights(tmp_path / "upcast" / CHECKPOINT))
    original = dict(TextWeights(checkpoint / CHECKPOINT))
    assert from_bf16.keys() == upcast.keys() and "lm_head.weight" in from_bf16 and "norm.weight" in from_bf16
    for name, array in upcast.items():
        assert from_bf16[name].dtype == np.float32
        np.testing.assert_array_equal(from_bf16[name], array, err_msg=name)
    # Not vacuous: bf16 rounding changed the weights.
    q_proj = "layers.0.self_attn.q_proj.weight"
    assert not np.array_equal(from_bf16[q_proj], original[q_proj])


def test_tied_embeddings_serve_as_lm_head(checkpoint, tmp_path):
    from safetensors.numpy import load_file, save_file

    tensors = load_file(str(checkpoint / CHECKPOINT))
    del tensors["lm_head.weight"]
    save_file(tensors, str(tmp_path / CHECKPOINT))
    weights = dict(TextWeights(tmp_path / CHECKPOINT))
    np.testing.assert_array_equal(weights["lm_head.weight"], tensors["model.text_model.embed_tokens.weight"])


@pytest.mark.parametrize("damage", ["missing", "truncated"])
def test_without_a_usable_checkpoint_the_pull_succeeds_on_the_community_decoder(
    damage, checkpoint, community, tmp_path, caplog
):
    source = tmp_path / "source"
    shutil.copytree(community, source)
    if damage == "missing":
        (source / CHECKPOINT).unlink()
        reason = "model.safetensors is not downloaded"
    else:
        data = (source / CHECKPOINT).read_bytes()
        (source / CHECKPOINT).write_bytes(data[: len(data) // 2])
        reason = "failed"
    model_dir, output = pull(tmp_path / "home", source, "fp32")
    assert not (model_dir / gqa_decoder_file("fp32")).exists()
    assert "decoder: community (onnx/decoder_model_merged.onnx)" in output and reason in output
    with caplog.at_level(logging.WARNING, logger=onnx_backend.__name__):
        captioner, tokens = caption(model_dir, "fp32")
    assert not captioner._gqa and captioner.decoder_file == onnx_path("decoder_model_merged", "fp32")
    warnings = [r.getMessage() for r in caplog.records if r.name == onnx_backend.__name__]
    assert len(warnings) == 1 and reason in warnings[0]
    assert tokens == reference_generate(checkpoint, [fixed_image()], TINY_PROMPT, TOKENS)[0]
    if damage == "truncated":
        # A good checkpoint pulled later replaces the failure note with the derived decoder.
        shutil.copyfile(checkpoint / CHECKPOINT, source / CHECKPOINT)
        (model_dir / CHECKPOINT).unlink()
        model_dir, output = pull(tmp_path / "home", source, "fp32")
        assert (model_dir / gqa_decoder_file("fp32")).is_file() and "GroupQueryAttention" in output


def web_pull(home) -> None:
    import time

    from memesearch.config import Settings
    from memesearch.web.models_info import pull_status, start_pull

    background, settings = {}, Settings(home=home)
    start_pull(background, settings, MODEL, "fp32")
    deadline = time.monotonic() + 120
    while (state := pull_status(background, settings, MODEL))["state"] == "running" and time.monotonic() < deadline:
        time.sleep(0.1)
    assert state["state"] == "done", state


@pytest.mark.parametrize(("hub_has_checkpoint", "via"), [(True, "cli"), (True, "web"), (False, "cli")])
def test_hub_pull_fetches_the_checkpoint_at_the_pinned_revision(hub_has_checkpoint, via, community, tmp_path,
                                                                 monkeypatch):
    """Through the real download code against a local stand-in for the hub, from the CLI or the
    Models page's pull job: model.safetensors comes from the same repo and revision; a hub
    without it (404) still gives a working pull."""
    from memesearch.ml.download import status
    from memesearch.ml.model_files import required_files
    from memesearch.ml.registry import get_spec
    from tests.hub_server import FakeHub

    spec = get_spec(MODEL)
    names = required_files(spec, "fp32") + ([CHECKPOINT] if hub_has_checkpoint else [])
    hub = FakeHub(spec.sources.onnx.repo, spec.sources.onnx.revision, {n: (community / n).read_bytes() for n in names})
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    try:
        if via == "cli":
            home = str(tmp_path / "home")
            result = CliRunner().invoke(app, ["--data-dir", home, "models", "pull", MODEL, "--dtype", "fp32"])
            assert result.exit_code == 0, result.output
        else:
            web_pull(tmp_path / "home")
    finally:
        hub.close()
    fetched = {path for path, _ in hub.gets()}
    checkpoint_url = f"/{spec.sources.onnx.repo}/resolve/{spec.sources.onnx.revision}/{CHECKPOINT}"
    assert (checkpoint_url in fetched) == hub_has_checkpoint
    model_dir = tmp_path / "home" / "models" / MODEL
    files = status(spec, tmp_path / "home" / "models", "fp32")
    assert files.complete
    if hub_has_checkpoint:
        assert (model_dir / gqa_decoder_file("fp32")).is_file() and CHECKPOINT in files.present
        assert files.total_bytes >= (community / CHECKPOINT).stat().st_size  # the size shown counts it
    else:
        assert not (model_dir / gqa_decoder_file("fp32")).exists() and files.optional_missing == [CHECKPOINT]
        assert "not downloaded" in files.decoder


def test_a_pull_bringing_another_checkpoint_derives_the_decoder_again(checkpoint, community, tmp_path, caplog,
                                                                      monkeypatch):
    """The derived decoder records what it was made from: a re-pull of the same files keeps it, a
    checkpoint with other weights (a new pinned revision) or a newer recipe derives it again, and
    a new checkpoint that cannot be derived leaves the community decoder (never a failed pull)."""
    from safetensors.numpy import load_file, save_file

    from memesearch.ml.families.smolvlm import derive_decoder

    source = tmp_path / "source"
    shutil.copytree(community, source)
    model_dir, _ = pull(tmp_path / "home", source, "fp32")
    derived = model_dir / gqa_decoder_file("fp32")
    made = derived.stat().st_mtime_ns
    old_tokens = caption(model_dir, "fp32")[1]
    pull(tmp_path / "home", source, "fp32")  # the same files again (copied anew: a new mtime)
    assert derived.stat().st_mtime_ns == made  # same sha256: kept

    # Another checkpoint: the same model with its lm_head negated (other tokens for sure).
    other = tmp_path / "other-checkpoint"
    shutil.copytree(checkpoint, other)
    tensors = load_file(str(checkpoint / CHECKPOINT))
    tensors["lm_head.weight"] = -tensors["lm_head.weight"]
    save_file(tensors, str(other / CHECKPOINT), metadata={"format": "pt"})
    shutil.copyfile(other / CHECKPOINT, source / CHECKPOINT)
    # Swapped by hand, not pulled: the runtime sees it (size or mtime) and runs the community decoder.
    shutil.copyfile(other / CHECKPOINT, model_dir / CHECKPOINT)
    path, reason = derive_decoder.decoder_choice(model_dir, "fp32")
    assert path == onnx_path("decoder_model_merged", "fp32") and f"another {CHECKPOINT}" in reason
    with caplog.at_level(logging.INFO, logger=derive_decoder.__name__):
        _, output = pull(tmp_path / "home", source, "fp32")
    assert f"decoder: GroupQueryAttention ({gqa_decoder_file('fp32')})" in output
    assert any(f"another {CHECKPOINT}: deriving it again" in r.getMessage() for r in caplog.records)
    captioner, tokens = caption(model_dir, "fp32")
    assert captioner._gqa and tokens != old_tokens
    assert tokens == reference_generate(other, [fixed_image()], TINY_PROMPT, TOKENS)[0]

    # A newer recipe derives it again too.
    made = derived.stat().st_mtime_ns
    monkeypatch.setitem(derive_decoder.RECIPES, "fp32", derive_decoder.RECIPES["fp32"] + 1)
    assert "recipe" in derive_decoder.decoder_choice(model_dir, "fp32")[1]
    pull(tmp_path / "home", source, "fp32")
    assert derived.stat().st_mtime_ns != made and derive_decoder.decoder_choice(model_dir, "fp32")[1] is None

    # A new checkpoint that cannot be derived: the stale decoder goes, the pull still works.
    data = (other / CHECKPOINT).read_bytes()
    (source / CHECKPOINT).write_bytes(data[: len(data) // 2])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger=derive_decoder.__name__):
        _, output = pull(tmp_path / "home", source, "fp32")
    assert not derived.exists() and "decoder: community (onnx/decoder_model_merged.onnx)" in output
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1 and "failed" in output
    captioner, tokens = caption(model_dir, "fp32")
    assert not captioner._gqa and tokens == old_tokens
