"""Can a caption model run here, right now? Asked before any work is queued.

The answer comes from the backend chain's cheap checks (files present, packages
installed, API key set; see ``availability.would_run``) and never loads weights, so a
Generate click or `jobs start describe` with a model that is not downloaded
fails in well under a second with one sentence and the command that fixes it,
instead of queueing work that fails once per meme.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from memesearch.config import Settings
from memesearch.errors import ConfigError, MemeSearchError, ModelNotReadyError, NotFoundError
from memesearch.ml.failures import failure_reason
from memesearch.ml.registry import ModelSpec, get_spec, list_specs

#: Models only developers see (MEMESEARCH_DEV=1): the fake captioner writes colour and
#: size notes, not descriptions, and would make search worse on a real library.
DEV_FAMILIES = ("fake",)


def is_dev_model(spec: ModelSpec) -> bool:
    return spec.family in DEV_FAMILIES


def listed_specs(settings: Settings) -> list[ModelSpec]:
    """The models lists, menus and defaults offer: developer models only with MEMESEARCH_DEV=1."""
    return [spec for spec in list_specs(settings.home) if settings.dev or not is_dev_model(spec)]


def listed_spec(model_id: str, settings: Settings) -> ModelSpec:
    """A model a user may choose; a developer model without MEMESEARCH_DEV=1 is unknown."""
    spec = get_spec(model_id, settings.home)
    if is_dev_model(spec) and not settings.dev:
        known = ", ".join(s.id for s in listed_specs(settings))
        raise NotFoundError(
            f"{spec.id!r} is a developer test model and is hidden",
            hint=f"set MEMESEARCH_DEV=1 to use it; known models: {known}",
        )
    return spec


def download_size_mb(spec: ModelSpec, dtype: str | None = None) -> int | None:
    """Approximate download size of the default dtype from models.yml (None if not recorded)."""
    source = spec.sources.onnx
    if source is None:
        return None
    info = source.dtypes.get(dtype or source.default_dtype)
    sizes = getattr(info, "files_mb", None) or {}
    return int(sum(sizes.values())) if sizes else None


def download_label(spec: ModelSpec) -> str:
    size = download_size_mb(spec)
    return f"Download {spec.id}" + (f" (about {size} MB)" if size else "")


@dataclass
class Readiness:
    model_id: str
    ready: bool
    #: The backend that would run ("onnx (int8)", "api", "remote") or "none".
    backend: str
    #: backend -> why it would be skipped (its ``hint``, if any, is the fix).
    problems: dict[str, Exception] = field(default_factory=dict)
    #: Downloading the ONNX files would make the model runnable.
    downloadable: bool = False

    @property
    def reasons(self) -> list[str]:
        """Why each earlier backend would be skipped, for people."""
        return [f"{backend}: {failure_reason(problem)}" for backend, problem in self.problems.items()]

    def error(self, spec: ModelSpec) -> ModelNotReadyError:
        details = "\n".join(self.reasons) or None
        if self.downloadable:
            return ModelNotReadyError(
                f"The model {spec.id} is not downloaded yet.",
                hint=f"memesearch models pull {spec.id}",
                details=details,
                action={"kind": "download", "model": spec.id, "label": download_label(spec),
                        "size_mb": download_size_mb(spec)},
            )
        return ModelNotReadyError(
            f"The model {spec.id} cannot run on this machine.",
            hint=_hint(self.problems),
            details=details,
        )


def _hint(problems: dict[str, Exception]) -> str:
    fixes = [problem.hint for problem in problems.values() if isinstance(problem, MemeSearchError) and problem.hint]
    return "; or ".join(dict.fromkeys(fixes)) or f"see `memesearch models list` and `memesearch models check`"


def _problem(spec: ModelSpec, settings: Settings, backend: str) -> Exception | None:
    """Why ``backend`` cannot run ``spec`` from what is on this machine (None: it can)."""
    from memesearch.ml import model_files
    from memesearch.ml.availability import availability_problem

    if backend == "torch":
        return _torch_problem(spec, settings)
    dtype = spec.sources.onnx.default_dtype if backend == "onnx" and spec.sources.onnx else None
    if backend == "onnx" and spec.sources.onnx is not None:
        # A user who pulled another dtype (`--dtype fp32`) is ready too: the chain uses it.
        dtype = model_files.installed_dtype(spec, settings.models_dir) or dtype
    return availability_problem(spec, settings, backend, dtype)


def _torch_problem(spec: ModelSpec, settings: Settings) -> Exception | None:
    """The PyTorch fallback without importing torch (seconds) or asking the hub: the packages
    must be installed and the weights already on disk. Weights the hub would still have to
    send are not "downloaded": transformers would fetch them inside a job, without progress."""
    import importlib.util

    from memesearch.ml import model_files

    if spec.sources.torch is None:
        return ConfigError("no torch source in models.yml")
    for package in ("torch", "transformers"):
        if importlib.util.find_spec(package) is None:
            return _not_installed(package)
    if (model_files.model_dir(spec, settings.models_dir) / "torch" / "config.json").is_file():
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return _not_installed("huggingface_hub")
    source = spec.sources.torch
    if isinstance(try_to_load_from_cache(source.repo, "config.json", revision=source.revision), str):
        return None
    return ModelNotReadyError("the PyTorch weights are not downloaded", hint=f"memesearch models pull {spec.id}")


def _not_installed(package: str) -> ModelNotReadyError:
    return ModelNotReadyError(f"the Python package '{package}' is not installed", hint="pip install 'memesearch[torch]'")


def _label(spec: ModelSpec, settings: Settings, backend: str) -> str:
    """"onnx (int8)", "torch", "api", ...: the backend that would run, as `models list` shows it."""
    from memesearch.ml import model_files

    if backend == "onnx" and spec.sources.onnx is not None:
        return f"onnx ({model_files.installed_dtype(spec, settings.models_dir) or spec.sources.onnx.default_dtype})"
    return backend


def check(spec: ModelSpec, settings: Settings) -> Readiness:
    """Whether ``spec`` can run here with what is installed and downloaded, without loading it."""
    if is_dev_model(spec) and not settings.dev:
        developer_tool = ModelNotReadyError("the fake model is a developer tool", hint="set MEMESEARCH_DEV=1")
        return Readiness(spec.id, False, "none", {"fake": developer_tool})
    if settings.ml_urls:
        # The ML service owns the models; it answers for itself (and jobs retry while it is down).
        return Readiness(spec.id, True, "remote")
    problems: dict[str, Exception] = {}
    for backend in spec.backends:
        problem = _problem(spec, settings, backend)
        if problem is None:
            return Readiness(spec.id, True, _label(spec, settings, backend), problems)
        problems[backend] = problem
    downloadable = spec.sources.onnx is not None and "onnx" in spec.backends
    return Readiness(spec.id, False, "none", problems, downloadable=downloadable)


def require_ready(model_id: str, settings: Settings) -> ModelSpec:
    """The spec of ``model_id`` if it can run here, else ModelNotReadyError (nothing is queued)."""
    spec = listed_spec(model_id, settings)
    if spec.is_image_text:
        raise ConfigError(
            f"{spec.id} is an image-text embedding model (visual search), not a caption model",
            hint="choose a caption model, e.g. smolvlm-256m (see `memesearch models list`)",
        )
    state = check(spec, settings)
    if not state.ready:
        raise state.error(spec)
    return spec
