"""Where a model's files live and which ones a backend needs: ``<models dir>/<model id>/``.

Shared by the backend chain (is a backend installed?), downloads (what to fetch), readiness
and ``models check``; it imports neither of them, so none of them needs the other.
"""

from __future__ import annotations

from pathlib import Path

from memesearch.errors import ConfigError, ModelUnavailableError
from memesearch.ml import families
from memesearch.ml.registry import ModelSpec


class MissingFilesError(ModelUnavailableError):
    """A local backend's files are not (all) downloaded."""


def model_dir(spec: ModelSpec, models_dir: Path) -> Path:
    return models_dir / spec.id


def onnx_dtype(spec: ModelSpec, dtype: str | None) -> str:
    source = spec.sources.onnx
    if source is None:
        raise ConfigError(f"model {spec.id!r} has no ONNX source")
    chosen = dtype or source.default_dtype
    if chosen not in source.dtypes:
        raise ConfigError(
            f"model {spec.id!r} has no ONNX dtype {chosen!r}",
            hint=f"available: {', '.join(source.dtypes)}",
        )
    return chosen


def required_files(spec: ModelSpec, dtype: str) -> list[str]:
    """Relative paths the ONNX backend needs, as stored in the model directory."""
    source = spec.sources.onnx
    if source is not None and dtype in source.files:
        # Explicit bundle files; .gz downloads are stored unpacked.
        return [name.removesuffix(".gz") for name in source.files[dtype]]
    return list(families.family_module("onnx", spec.family).required_files(dtype))


def missing_files(spec: ModelSpec, models_dir: Path, dtype: str) -> list[str]:
    directory = model_dir(spec, models_dir)
    return [name for name in required_files(spec, dtype) if not (directory / name).is_file()]


def installed_dtype(spec: ModelSpec, models_dir: Path) -> str | None:
    """The default dtype if its files are all present, else any other offered dtype that is."""
    source = spec.sources.onnx
    ordered = [source.default_dtype] + [d for d in source.dtypes if d != source.default_dtype]
    return next((d for d in ordered if not missing_files(spec, models_dir, d)), None)
