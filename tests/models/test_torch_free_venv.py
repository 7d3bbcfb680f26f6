"""The ONNX backends in a virtualenv that has no torch at all (the core install users get).

Tiny models of all three families are built and exported here (with torch),
then captioned in a fresh venv holding only `pip install -e .`; the tokens must
equal the ones the same ONNX files give in this process. There, too, a SmolVLM folder in
the community layout (traced decoder) plus its model.safetensors gets its GroupQueryAttention
decoder derived, as `models pull` does (smolvlm/derive_decoder.py), and runs it.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytestmark = pytest.mark.slow

from memesearch.ml.base import CaptionRequest  # noqa: E402
from memesearch.ml.families import captioner_class, family_module  # noqa: E402
from memesearch.ml.check_rows import fixed_image  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
FAMILIES = ("smolvlm", "florence2", "moondream")
TOKENS = 8

SCRIPT = textwrap.dedent(
    """
    import importlib.util, json, sys
    from pathlib import Path
    from memesearch.ml.base import CaptionRequest
    from memesearch.ml.families import captioner_class, family_module
    from memesearch.ml.check_rows import fixed_image

    out = {"torch_installed": importlib.util.find_spec("torch") is not None, "tokens": {}}
    for family, (folder, prompt) in json.loads(sys.argv[1]).items():
        onnx = family_module("onnx", family)
        captioner = captioner_class(onnx, "onnx")(Path(folder), dtype="fp32", threads=1)
        request = CaptionRequest(image=fixed_image(), prompt=prompt, max_new_tokens=%d)
        out["tokens"][family] = list(captioner.caption([request])[0].token_ids)
    from memesearch.ml.families.clip.onnx_backend import ClipOnnxEmbedder

    clip = ClipOnnxEmbedder(Path(sys.argv[2]), dtype="int8", threads=1)
    out["clip"] = [clip.embed_images([fixed_image()]).tolist(), clip.embed_texts(["a photo of a cat"]).tolist()]
    from memesearch.ml.families.smolvlm.derive_decoder import after_pull
    from memesearch.ml.families.smolvlm.onnx_backend import OnnxSmolVLMCaptioner

    after_pull(Path(sys.argv[3]), "int8")
    pulled = OnnxSmolVLMCaptioner(Path(sys.argv[3]), dtype="int8", threads=1)
    request = CaptionRequest(image=fixed_image(), prompt=sys.argv[4], max_new_tokens=%d)
    out["pulled"] = {"tokens": list(pulled.caption([request])[0].token_ids), "gqa": pulled._gqa}
    out["torch_imported"] = "torch" in sys.modules or "transformers" in sys.modules
    print(json.dumps(out))
    """ % (TOKENS, TOKENS)
)


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    models = {}
    for family in FAMILIES:
        work = tmp_path_factory.mktemp(family)
        tiny = family_module("tiny", family)
        checkpoint = tiny.build_tiny_checkpoint(work / "checkpoint", seed=0)
        folder = family_module("export", family).export(checkpoint, work / "onnx")
        prompt = getattr(tiny, "TINY_PROMPT", "")
        models[family] = (str(folder), prompt)
    return models


@pytest.fixture(scope="module")
def community_smolvlm(tmp_path_factory):
    """A SmolVLM folder as a pull leaves it before derivation: traced int8 decoder + model.safetensors."""
    import shutil

    work = tmp_path_factory.mktemp("pulled")
    checkpoint = family_module("tiny", "smolvlm").build_tiny_checkpoint(work / "checkpoint", seed=0)
    folder = family_module("export", "smolvlm").export(checkpoint, work / "onnx", int8=True, gqa=False)
    shutil.copyfile(checkpoint / "model.safetensors", folder / "model.safetensors")
    return folder


@pytest.fixture(scope="module")
def clip_export(tmp_path_factory):
    work = tmp_path_factory.mktemp("clip")
    checkpoint = family_module("tiny", "clip").build_tiny_checkpoint(work / "checkpoint", seed=0)
    return family_module("export", "clip").export(checkpoint, work / "onnx", int8=True)


@pytest.fixture(scope="module")
def torch_free_python(tmp_path_factory) -> Path:
    venv = tmp_path_factory.mktemp("venv") / "core"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, timeout=120)
    python = venv / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check", "-e", str(REPO)],
        check=True, timeout=900,
    )
    return python


def test_onnx_backends_run_without_torch(exported, clip_export, community_smolvlm, torch_free_python):
    here = {}
    for family, (folder, prompt) in exported.items():
        captioner = captioner_class(family_module("onnx", family), "onnx")(Path(folder), dtype="fp32", threads=1)
        request = CaptionRequest(image=fixed_image(), prompt=prompt, max_new_tokens=TOKENS)
        here[family] = list(captioner.caption([request])[0].token_ids)
    done = subprocess.run(
        [str(torch_free_python), "-c", SCRIPT, json.dumps(exported), str(clip_export), str(community_smolvlm),
         exported["smolvlm"][1]],
        capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["torch_installed"] is False and result["torch_imported"] is False
    assert result["tokens"] == here
    from memesearch.ml.families.clip.onnx_backend import ClipOnnxEmbedder

    clip = ClipOnnxEmbedder(clip_export, dtype="int8", threads=1)
    clip_here = [clip.embed_images([fixed_image()]), clip.embed_texts(["a photo of a cat"])]
    for there, mine in zip(result["clip"], clip_here):
        np.testing.assert_allclose(np.asarray(there), mine, atol=1e-6)
    assert all(len(tokens) > 0 for tokens in here.values())
    # The decoder derived there, from the safetensors alone, gives the tokens it gives here.
    from memesearch.ml.families.smolvlm.derive_decoder import gqa_decoder_file

    assert (community_smolvlm / gqa_decoder_file("int8")).is_file() and result["pulled"]["gqa"] is True
    pulled = captioner_class(family_module("onnx", "smolvlm"), "onnx")(community_smolvlm, dtype="int8", threads=1)
    request = CaptionRequest(image=fixed_image(), prompt=exported["smolvlm"][1], max_new_tokens=TOKENS)
    assert pulled.caption([request])[0].token_ids == result["pulled"]["tokens"] and pulled._gqa
