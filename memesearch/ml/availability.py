"""Could a backend run a caption model here? Cheap checks only (packages, files, key; no
weights loaded), shared by ``models check`` and readiness."""

from __future__ import annotations

import os

from memesearch.config import Settings
from memesearch.errors import require
from memesearch.ml.failures import ApiKeyMissingError, failure_reason
from memesearch.ml.model_files import MissingFilesError
from memesearch.ml.registry import ModelSpec


def availability_problem(spec: ModelSpec, settings: Settings, backend: str, dtype: str | None) -> Exception | None:
    """None if the backend could be tried, else why not, as the exception trying would raise
    (its ``hint``, if any, is the fix). Cheap: no model is loaded."""
    from memesearch.ml import chain, families, model_files

    try:
        if backend == "onnx":
            missing = model_files.missing_files(spec, settings.models_dir, dtype)
            if missing:
                shown = ", ".join(missing[:3]) + (", ..." if len(missing) > 3 else "")
                return MissingFilesError(f"{len(missing)} file(s) missing ({shown})",
                                         hint=f"memesearch models pull {spec.id} --dtype {dtype}")
        elif backend == "torch":
            require("torch", extra="torch", purpose="The PyTorch caption backend")
            require("transformers", extra="torch", purpose="The PyTorch caption backend")
            families.family_module("torch_backends", spec.family)
            chain.torch_location(spec, settings)  # weights local, cached, or the hub reachable
        elif backend == "api":
            source = chain.api_source_for(spec, settings)
            if source.api_key_env and not os.environ.get(source.api_key_env) and source.api_key is None:
                return ApiKeyMissingError(f"no API key in {source.api_key_env}", hint=f"set {source.api_key_env}")
    except Exception as exc:  # a missing package, family module or hub: all mean "not available"
        return exc
    return None


def would_run(spec: ModelSpec, settings: Settings) -> tuple[str, list[str]]:
    """The first backend whose packages, files and key are present (without loading it),
    and the reasons the earlier ones would be skipped (for people)."""
    reasons = []
    for backend in spec.backends:
        dtype = spec.sources.onnx.default_dtype if backend == "onnx" and spec.sources.onnx else None
        problem = availability_problem(spec, settings, backend, dtype)
        if problem is None:
            return (f"{backend} ({dtype})" if dtype else backend), reasons
        reasons.append(f"{backend}: {failure_reason(problem)}")
    return "none", reasons
