"""The caption fallback chain: try a model's backends in order until one works.

A backend is skipped (with its reason logged and kept for the final error) when
its Python packages are missing, its files are not downloaded, or loading it
fails for any reason. A backend that fails while *running* falls through to the
next one for that call only. When nothing works, the error lists every
backend's reason and the exact command that would fix it.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image
from pydantic import SecretStr

from memesearch.config import Settings
from memesearch.errors import ConfigError, InvalidInputError, ModelUnavailableError, require
from memesearch.ml import families
from memesearch.ml.base import CaptionRequest, CaptionResult, Captioner
from memesearch.ml.caption_streams import auto_streams
from memesearch.ml.failures import BackendRunError, failure_reason, user_fix
from memesearch.ml.model_files import MissingFilesError, installed_dtype, missing_files, model_dir, onnx_dtype
from memesearch.ml.registry import ApiSource, ModelSpec, get_spec

log = logging.getLogger(__name__)


@dataclass
class ChainCaptionResult(CaptionResult):
    """A caption plus where it came from (base.CaptionResult has no model/revision)."""

    model_id: str = ""
    revision: str = ""


class ModelLoadError(ModelUnavailableError):
    """No backend of the chain could even load: every image would fail the same way."""


@dataclass
class Loaded:
    captioner: Captioner
    dtype: str
    revision: str


#: A loader opens one backend for a spec or raises (any exception = skip it).
BackendLoader = Callable[[ModelSpec, Settings, "str | None"], Loaded]


# ----------------------------------------------------------------------------- loaders


def _threads(settings: Settings) -> int | None:
    return settings.threads or None


def _image_options(cls: type, spec: ModelSpec) -> dict:
    """Preprocessing options from models.yml, for the captioners whose constructor takes them."""
    edge = spec.generation.image_longest_edge
    if edge and "image_longest_edge" in inspect.signature(cls.__init__).parameters:
        return {"image_longest_edge": edge}
    return {}


def _stream_options(cls: type, settings: Settings) -> dict:
    """Caption streams (memesearch.ml.caption_streams), for the captioners that run them."""
    if "streams" in inspect.signature(cls.__init__).parameters:
        return {"streams": auto_streams(settings.caption_streams)}
    return {}


def load_onnx(spec: ModelSpec, settings: Settings, dtype: str | None) -> Loaded:
    chosen = onnx_dtype(spec, dtype)
    if dtype is None:
        # A user who pulled `--dtype fp32` should not have to repeat the dtype on every run.
        chosen = installed_dtype(spec, settings.models_dir) or chosen
    module = families.family_module("onnx", spec.family)
    missing = missing_files(spec, settings.models_dir, chosen)
    if missing:
        directory = model_dir(spec, settings.models_dir)
        raise MissingFilesError(
            f"{len(missing)} file(s) missing in {directory}: {', '.join(missing)}",
            hint=f"memesearch models pull {spec.id}" + ("" if chosen == spec.sources.onnx.default_dtype else f" --dtype {chosen}"),
        )
    cls = families.captioner_class(module, "onnx")
    captioner = cls(model_dir(spec, settings.models_dir), dtype=chosen, threads=_threads(settings),
                    **_image_options(cls, spec), **_stream_options(cls, settings))
    captioner.ensure_loaded()
    return Loaded(captioner, chosen, spec.sources.onnx.revision)


def load_torch(spec: ModelSpec, settings: Settings, dtype: str | None) -> Loaded:
    source = spec.sources.torch
    if source is None:
        raise ConfigError(f"model {spec.id!r} has no torch source")
    require("torch", extra="torch", purpose="The PyTorch caption backend")
    require("transformers", extra="torch", purpose="The PyTorch caption backend")
    cls = families.captioner_class(families.family_module("torch_backends", spec.family), "torch")
    where, revision = torch_location(spec, settings)
    captioner = cls(where, revision=revision, dtype="fp32", threads=_threads(settings), **_image_options(cls, spec))
    captioner.ensure_loaded()
    return Loaded(captioner, "fp32", source.revision)


def torch_location(spec: ModelSpec, settings: Settings) -> tuple[str | Path, str | None]:
    """Local checkpoint, cached hub snapshot, or the hub repo (only if the hub answers).

    Checking first matters: offline, transformers retries every file for minutes.
    """
    from memesearch.ml import download

    source = spec.sources.torch
    local = model_dir(spec, settings.models_dir) / "torch"
    if (local / "config.json").is_file():  # a checkpoint placed by hand wins
        return local, None
    hub = require("huggingface_hub", extra="torch", purpose="The PyTorch caption backend")
    cached = hub.try_to_load_from_cache(source.repo, "config.json", revision=source.revision)
    if isinstance(cached, str):
        return Path(cached).parent, None  # the snapshot folder: loads without network
    if download.hub_offline():
        raise ModelUnavailableError(f"{source.repo}@{source.revision} is not in the Hugging Face cache and HF_HUB_OFFLINE is set")
    problem = download.probe_hub()
    if problem:
        raise ModelUnavailableError(
            f"cannot fetch the PyTorch weights {source.repo}@{source.revision}: {problem}",
            hint=f"connect to the internet once, or put the checkpoint in {local}",
        )
    return source.repo, source.revision


def api_source_for(spec: ModelSpec, settings: Settings) -> ApiSource:
    """The model's own API settings, else the registry's ``openai`` entry; the ``openai`` entry
    takes the endpoint saved on the Settings page (``saved_settings``) over models.yml."""
    from memesearch import saved_settings

    if spec.sources.api is not None and spec.id != "openai":
        return spec.sources.api
    source = spec.sources.api if spec.id == "openai" else get_spec("openai", settings.home).sources.api
    if source is None:
        raise ConfigError("the 'openai' model in models.yml has no api source")
    saved = saved_settings.api_endpoint(settings.home)
    updates = {k: v for k, v in (("base_url", saved.base_url), ("model", saved.model)) if v}
    if saved.api_key:
        updates["api_key"] = SecretStr(saved.api_key)
    return source.model_copy(update=updates) if updates else source


def load_api(spec: ModelSpec, settings: Settings, dtype: str | None) -> Loaded:
    from memesearch.ml.api_backend import ApiCaptioner

    source = api_source_for(spec, settings)
    captioner = ApiCaptioner(source, model_id=spec.id)
    captioner.ensure_loaded()
    return Loaded(captioner, "remote", source.model)


def load_fake(spec: ModelSpec, settings: Settings, dtype: str | None) -> Loaded:
    from memesearch.ml.fake import FakeCaptioner

    options = spec.sources.fake
    captioner = FakeCaptioner(
        model_id=spec.id,
        delay_s=options.delay_s if options else 0.0,
        fail_every=options.fail_every if options else 0,
    )
    captioner.batch_size = options.batch_size if options else 1
    return Loaded(captioner, "none", "")


LOADERS: dict[str, BackendLoader] = {"onnx": load_onnx, "torch": load_torch, "api": load_api, "fake": load_fake}


# ----------------------------------------------------------------------------- the chain


class ChainCaptioner(Captioner):
    """Runs the first backend that loads; falls through on load and run failures."""

    def __init__(
        self,
        spec: ModelSpec,
        settings: Settings,
        backends: list[str],
        *,
        dtype: str | None = None,
        loaders: dict[str, BackendLoader] | None = None,
    ) -> None:
        super().__init__()
        self.spec = spec
        self.model_id = spec.id
        self.settings = settings
        self.backends = backends
        self.requested_dtype = dtype
        self.loaders = loaders or LOADERS
        self._opened: dict[str, Loaded] = {}
        self._open_lock = threading.Lock()
        #: backend -> why it could not be loaded (the exception its loader raised).
        self.failures: dict[str, BaseException] = {}
        #: backend -> its latest failure while captioning.
        self.run_failures: dict[str, BackendRunError] = {}
        self.active: str | None = None

    def _try_load(self, backend: str) -> Loaded | None:
        # Fallbacks are opened lazily from caption calls, which may run concurrently.
        with self._open_lock:
            return self._try_load_locked(backend)

    def _try_load_locked(self, backend: str) -> Loaded | None:
        if backend in self._opened:
            return self._opened[backend]
        if backend in self.failures:
            return None
        try:
            loaded = self.loaders[backend](self.spec, self.settings, self.requested_dtype if backend == "onnx" else None)
        except Exception as exc:  # any load failure means "try the next backend"
            self.failures[backend] = exc
            log.info("caption model %s: backend %s skipped: %s", self.spec.id, backend, failure_reason(exc))
            return None
        self._opened[backend] = loaded
        return loaded

    def _load(self) -> None:
        for backend in self.backends:
            loaded = self._try_load(backend)
            if loaded is not None:
                self._activate(backend, loaded)
                return
        error = self.unavailable_error()
        raise ModelLoadError(error.message, hint=error.hint)

    def _activate(self, backend: str, loaded: Loaded) -> None:
        self.active = backend
        self.backend = backend
        self.dtype = loaded.dtype
        # The chain splits a claimed chunk into its model's batches (``call_batch``: 1 meme where
        # the active backend's batches would not be exact) and runs them on the model's streams.
        self.batch_size = loaded.captioner.batch_size
        self.streams = loaded.captioner.streams
        log.info("caption model %s runs on %s (%s)", self.spec.id, backend, loaded.dtype)

    @property
    def batches_exactly(self) -> bool:
        """The active backend's answer (SmolVLM's per-row int8 decoder batches exactly though its
        dtype alone says it would not); the dtype's before a backend is active."""
        loaded = self._opened.get(self.active) if self.active else None
        return loaded.captioner.batches_exactly if loaded is not None else super().batches_exactly

    def unavailable_error(self) -> ModelUnavailableError:
        reasons = {**self.failures, **self.run_failures}
        lines = [f"  - {backend}: {failure_reason(reasons[backend]) if backend in reasons else 'not tried'}"
                 for backend in self.backends]
        return ModelUnavailableError(
            f"no backend could run caption model {self.spec.id!r}:\n" + "\n".join(lines),
            hint=_fix_hint(self.spec, reasons),
        )

    def _caption_batch(self, requests: list[CaptionRequest]) -> list[CaptionResult]:
        start = self.backends.index(self.active) if self.active in self.backends else 0
        for backend in self.backends[start:]:
            loaded = self._try_load(backend)
            if loaded is None:
                continue
            try:
                produced = loaded.captioner.caption(requests)
            except InvalidInputError:
                raise  # the image is the problem, not the backend: another backend would fail too
            except Exception as exc:
                # Only this call falls through; the backend stays loaded for the next one.
                self.run_failures[backend] = BackendRunError("captioning", exc)
                log.warning("caption model %s: backend %s failed at run time: %s", self.spec.id, backend, failure_reason(exc))
                continue
            return [self._wrap(result, backend, loaded) for result in produced]
        raise self.unavailable_error()

    def _wrap(self, result: CaptionResult, backend: str, loaded: Loaded) -> ChainCaptionResult:
        return ChainCaptionResult(
            text=result.text,
            token_ids=result.token_ids,
            backend=result.backend or backend,
            dtype=result.dtype or loaded.dtype,
            ms=result.ms,
            model_id=self.spec.id,
            revision=loaded.revision,
        )

    def requests_for(self, images: list[Image.Image]) -> list[CaptionRequest]:
        """Requests carrying the spec's prompt (language applied) and length."""
        prompt = self.spec.effective_prompt()
        return [CaptionRequest(image=image, prompt=prompt, max_new_tokens=self.spec.max_new_tokens) for image in images]

    def caption_images(self, images: list[Image.Image]) -> list[ChainCaptionResult]:
        return self.caption(self.requests_for(images))  # type: ignore[return-value]


def _fix_hint(spec: ModelSpec, failures: dict[str, BaseException]) -> str:
    fixes = [fix for fix in map(user_fix, failures.values()) if fix]
    if not fixes:
        fixes.append(f"memesearch models pull {spec.id}")
    return "; or ".join(dict.fromkeys(fixes))


def load_captioner(
    spec: ModelSpec,
    settings: Settings,
    *,
    backend: str | None = None,
    dtype: str | None = None,
    loaders: dict[str, BackendLoader] | None = None,
) -> ChainCaptioner:
    """A loaded captioner for ``spec``: the first backend that works, or ModelUnavailableError.

    ``backend`` restricts the chain to that one backend (the ``--backend`` flag).
    """
    if spec.is_image_text:
        raise ConfigError(
            f"{spec.id} is an image-text embedding model (visual search), not a caption model",
            hint="choose a caption model, e.g. smolvlm-256m (see `memesearch models list`)",
        )
    backends = list(spec.backends)
    if backend is not None:
        if backend not in (loaders or LOADERS):
            raise ConfigError(f"unknown backend {backend!r}", hint=f"one of: {', '.join(LOADERS)}")
        backends = [backend]
    chain = ChainCaptioner(spec, settings, backends, dtype=dtype, loaders=loaders)
    chain.ensure_loaded()
    return chain
