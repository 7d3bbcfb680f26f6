"""The model registry: shipped entries, user overrides, and errors that point at a line."""

from __future__ import annotations

import textwrap

import pytest

from memesearch.errors import ConfigError, NotFoundError
from memesearch.ml.registry import get_spec, list_specs, load_registry


def write_override(home, text: str):
    path = home / "models.yml"
    path.write_text(textwrap.dedent(text).lstrip())
    return path


def test_shipped_registry_has_every_model_with_a_working_fallback_order():
    specs = {spec.id: spec for spec in list_specs()}
    assert set(specs) == {
        "smolvlm-256m", "smolvlm-500m", "florence-2-base", "florence-2-large", "moondream2", "clip-vit-b-32", "clip-vit-b-16",
        "openai", "fake"
    }
    smol = specs["smolvlm-256m"]
    assert smol.backends == ["onnx", "torch", "api"]
    assert smol.sources.onnx.revision == "acc054744d60adea9d88214dab6e2219e6e512a7"
    assert smol.sources.onnx.pinned
    assert smol.sources.onnx.dtypes["int8"].files_mb["decoder_model_merged"] == 138
    assert specs["florence-2-base"].prompt == "<MORE_DETAILED_CAPTION>"
    assert specs["florence-2-base"].ocr_prompt == "<OCR>"
    assert specs["moondream2"].sources.torch.remote_code
    assert specs["openai"].sources.api.api_key_env == "MEMESEARCH_OPENAI_API_KEY"
    # Both CLIPs are Immich exports pinned to a commit, run by the clip family, with both floors.
    for model_id, repo in (("clip-vit-b-32", "immich-app/ViT-B-32__openai"), ("clip-vit-b-16", "immich-app/ViT-B-16__openai")):
        clip = specs[model_id]
        assert clip.family == "clip" and clip.is_image_text and clip.backends == ["onnx", "torch"]
        assert clip.sources.onnx.repo == repo and clip.sources.onnx.pinned
        assert clip.relevance_floor is not None and clip.image_floor is not None


def test_every_smolvlm_download_that_fetches_the_checkpoint_counts_it():
    """A pull of fp32 / int8 / q4 also fetches model.safetensors (smolvlm/derive_decoder.py), its
    biggest file: the download size the Models page and the onboarding show must include it."""
    from memesearch.ml.families.smolvlm.derive_decoder import CHECKPOINT, checkpoint_files
    from memesearch.ml.readiness import download_size_mb

    smolvlms = [spec for spec in list_specs() if spec.family == "smolvlm"]
    assert {spec.id for spec in smolvlms} == {"smolvlm-256m", "smolvlm-500m"}
    for spec in smolvlms:
        for dtype, info in spec.sources.onnx.dtypes.items():
            if checkpoint_files(dtype):
                assert CHECKPOINT in info.files_mb, (spec.id, dtype)
                assert download_size_mb(spec, dtype) >= info.files_mb[CHECKPOINT]


def test_unknown_key_is_rejected_with_file_and_line(tmp_path):
    path = write_override(
        tmp_path,
        """
        models:
          smolvlm-256m:
            generation:
              max_new_tokens: 32
              temperature: 0.7
        """,
    )
    with pytest.raises(ConfigError) as error:
        load_registry(path)
    message = str(error.value)
    assert f"{path}:5:" in message  # the `temperature:` line
    assert "temperature" in message


def test_bad_dtype_is_rejected_with_its_line(tmp_path):
    path = write_override(
        tmp_path,
        """
        models:
          florence-2-base:
            sources:
              onnx:
                default_dtype: int9
        """,
    )
    with pytest.raises(ConfigError) as error:
        load_registry(path)
    assert f"{path}:5:" in str(error.value)
    assert "default_dtype" in str(error.value)


def test_default_dtype_must_be_offered(tmp_path):
    path = write_override(
        tmp_path,
        """
        models:
          smolvlm-256m:
            sources:
              onnx:
                default_dtype: bnb4
        """,
    )
    # bnb4 is a real dtype name, but this repo entry does not offer it.
    with pytest.raises(ConfigError, match="default_dtype 'bnb4' is not one of dtypes"):
        load_registry(path)


def test_error_in_a_new_model_points_at_the_user_file(tmp_path):
    path = write_override(
        tmp_path,
        """
        models:
          my-model:
            family: llava
            prompt: hi
            backends: [api]
        """,
    )
    with pytest.raises(ConfigError) as error:
        load_registry(path)
    assert f"{path}:3:" in str(error.value)
    assert "family" in str(error.value)


def test_invalid_yaml_reports_the_line(tmp_path):
    path = write_override(tmp_path, "models:\n  fake:\n    prompt: [unclosed\n")
    with pytest.raises(ConfigError, match=r"models\.yml:\d+: invalid YAML"):
        load_registry(path)


def test_override_merges_per_model_and_adds_new_models(tmp_path):
    write_override(
        tmp_path,
        """
        models:
          smolvlm-256m:
            language: de
            generation: {max_new_tokens: 96}
            sources:
              onnx: {default_dtype: fp32}
          local-llava:
            family: api
            prompt: What is in this meme?
            backends: [api]
            sources:
              api: {base_url: "http://127.0.0.1:11434/v1", model: llava, api_key_env: null}
        """,
    )
    spec = get_spec("smolvlm-256m", tmp_path)
    assert spec.max_new_tokens == 96
    assert spec.sources.onnx.default_dtype == "fp32"
    # Keys the override does not mention keep their shipped values.
    assert spec.sources.onnx.revision == "acc054744d60adea9d88214dab6e2219e6e512a7"
    assert spec.backends == ["onnx", "torch", "api"]
    assert spec.effective_prompt().endswith("Write the description in the language with ISO code 'de'.")
    local = get_spec("local-llava", tmp_path)
    assert local.sources.api.base_url == "http://127.0.0.1:11434/v1"
    assert local.sources.api.api_key_env is None


def test_per_run_overrides_are_validated():
    spec = get_spec("smolvlm-256m")
    changed = spec.with_overrides(prompt="Name the template.", max_new_tokens=8, language="fr")
    assert changed.max_new_tokens == 8
    assert changed.effective_prompt().startswith("Name the template.")
    assert "'fr'" in changed.effective_prompt()
    assert spec.max_new_tokens == 64  # the registry entry itself is unchanged
    with pytest.raises(ConfigError, match="max_new_tokens"):
        spec.with_overrides(max_new_tokens=0)


def test_florence_refuses_other_languages_instead_of_ignoring_them():
    with pytest.raises(ConfigError, match="always answers in English"):
        get_spec("florence-2-base").with_overrides(language="de")


def test_unknown_model_lists_the_known_ones():
    with pytest.raises(NotFoundError) as error:
        get_spec("gpt-17")
    assert "smolvlm-256m" in error.value.hint
