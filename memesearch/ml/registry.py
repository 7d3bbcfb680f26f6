"""The model registry: ``models.yml`` (shipped) merged with ``<data dir>/models.yml``.

Every entry is validated by strict pydantic models (unknown keys are errors),
and every error points at the file and line that caused it, because a typo in
a hand-edited YAML file should never silently fall back to a default.
"""

from __future__ import annotations

import re
from importlib import resources
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, SecretStr, ValidationError, field_validator, model_validator

from memesearch.errors import ConfigError, NotFoundError

Family = Literal["smolvlm", "florence2", "moondream", "clip", "api", "fake"]
#: Families that embed images and texts into one vector space instead of writing captions.
IMAGE_TEXT_FAMILIES = ("clip",)
Backend = Literal["onnx", "torch", "api", "fake"]
#: ONNX precisions the community repos publish (file suffix ``_<dtype>``; fp32 has none).
Dtype = Literal["fp32", "fp16", "int8", "uint8", "quantized", "q4", "q4f16", "bnb4", "int4"]

_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DtypeInfo(_Strict):
    #: Sizes of the big files in MB, by component name (informational).
    files_mb: dict[str, float] = Field(default_factory=dict)


class BackendSource(_Strict):
    """Where a local backend (onnx or torch) gets its files."""

    repo: str
    revision: str = "main"

    @property
    def pinned(self) -> bool:
        return bool(_COMMIT_RE.match(self.revision))


class OnnxSource(BackendSource):
    default_dtype: Dtype = "fp32"
    dtypes: dict[Dtype, DtypeInfo] = Field(default_factory=lambda: {"fp32": DtypeInfo()})
    #: Explicit files per dtype, for repos whose layout the family cannot derive
    #: (moondream's single ``.mf`` bundle). ``.gz`` files are gunzipped on download.
    files: dict[Dtype, list[str]] = Field(default_factory=dict)
    #: SmolVLM: the int8 decoder our exporter and ``models pull`` write (smolvlm/derive_decoder.py
    #: ``INT8_DECODERS``): per_row batches bulk describe exactly, per_tensor is faster alone.
    int8_decoder: Literal["per_tensor", "per_row"] = "per_tensor"

    @model_validator(mode="after")
    def _default_is_offered(self) -> OnnxSource:
        if self.default_dtype not in self.dtypes:
            raise ValueError(f"default_dtype {self.default_dtype!r} is not one of dtypes {sorted(self.dtypes)}")
        return self


class TorchSource(BackendSource):
    #: The repo ships its own modelling code (moondream2); needs trust_remote_code.
    remote_code: bool = False


class ApiSource(_Strict):
    base_url: str
    model: str
    #: Environment variable holding the key; null for local servers that need none.
    api_key_env: str | None = "MEMESEARCH_OPENAI_API_KEY"
    #: The key saved on the web Settings page (filled in by ml.chain.api_source_for; never printed); wins over api_key_env.
    api_key: SecretStr | None = Field(default=None, exclude=True, repr=False)
    timeout_s: float = Field(default=60.0, gt=0)
    retries: int = Field(default=3, ge=0, le=10)

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("must start with http:// or https://")
        return value.rstrip("/")


class FakeSource(_Strict):
    #: Seconds each caption takes (to exercise timeouts and progress in tests).
    delay_s: float = Field(default=0.0, ge=0)
    #: Fail every Nth image (0 = never), to exercise error handling.
    fail_every: int = Field(default=0, ge=0)
    #: Images per model call (the jobs and the service batch up to this many).
    batch_size: int = Field(default=1, ge=1, le=64)


class Sources(_Strict):
    onnx: OnnxSource | None = None
    torch: TorchSource | None = None
    api: ApiSource | None = None
    fake: FakeSource | None = None


class Generation(_Strict):
    # Greedy decoding only: captions must be reproducible, so there is no sampling knob.
    max_new_tokens: int = Field(default=64, ge=1, le=1024)
    # SmolVLM only: the processor's first resize. Upstream's 2048 px cuts a 640x480 meme
    # into 12 tiles + a global image; 512 px is one tile and ~7x faster on a CPU
    # (docs/BENCHMARKS.md). None keeps the model's own setting.
    image_longest_edge: int | None = Field(default=None, ge=64, le=4096)


class ModelSpec(_Strict):
    id: str
    family: Family
    description: str = ""
    size: str = ""
    #: Typical seconds to describe one meme on a CPU; estimates a bulk run before it was ever measured.
    seconds_per_meme: float | None = Field(default=None, gt=0)
    #: Caption models only; image-text embedding models (family clip) have none.
    prompt: str = ""
    ocr_prompt: str | None = None
    language: str = Field(default="en", pattern=r"^[a-z]{2,3}(-[A-Za-z]{2,4})?$")
    #: Appended to the prompt for other languages; ``{language}`` is replaced.
    language_instruction: str | None = None
    generation: Generation = Field(default_factory=Generation)
    #: Image-text models only: the least image-text cosine a meme needs to be a search hit
    #: (below it the picture is not about the query; nonsense finds nothing).
    relevance_floor: float | None = Field(default=None, ge=-1, le=1)
    #: Image-text models only: the least image-to-image cosine a meme needs to be a "similar"
    #: hit of search by image (below it the picture is not like the query).
    image_floor: float | None = Field(default=None, ge=-1, le=1)
    backends: list[Backend] = Field(min_length=1)
    sources: Sources = Field(default_factory=Sources)

    @model_validator(mode="after")
    def _consistent(self) -> ModelSpec:
        for backend in self.backends:
            if backend in ("onnx", "torch", "fake") and getattr(self.sources, backend) is None:
                raise ValueError(f"backend {backend!r} is listed in backends but sources.{backend} is missing")
        if len(set(self.backends)) != len(self.backends):
            raise ValueError("backends lists a backend twice")
        if not self.prompt and not self.is_image_text:
            raise ValueError("a caption model needs a prompt")
        if self.language != "en" and not self.language_instruction:
            raise ValueError(
                f"language {self.language!r}: this model always answers in English "
                "(it has no language_instruction)"
            )
        return self

    @property
    def is_image_text(self) -> bool:
        """An image-text embedding model (visual search), not a caption model."""
        return self.family in IMAGE_TEXT_FAMILIES

    @property
    def max_new_tokens(self) -> int:
        return self.generation.max_new_tokens

    def effective_prompt(self) -> str:
        """The prompt with the language request appended when not English."""
        if self.language == "en" or not self.language_instruction:
            return self.prompt
        return f"{self.prompt} {self.language_instruction.format(language=self.language)}"

    def with_overrides(
        self,
        *,
        prompt: str | None = None,
        language: str | None = None,
        max_new_tokens: int | None = None,
    ) -> ModelSpec:
        """A validated copy with per-run changes (``None`` keeps the registry value)."""
        data = self.model_dump()
        if prompt is not None:
            data["prompt"] = prompt
        if language is not None:
            data["language"] = language
        if max_new_tokens is not None:
            data["generation"]["max_new_tokens"] = max_new_tokens
        try:
            return ModelSpec.model_validate(data)
        except ValidationError as exc:
            raise ConfigError(f"invalid override for model {self.id!r}: {_first_message(exc)}") from exc


# ----------------------------------------------------------------------------- loading

_Loc = tuple[str | int, ...]


class _YamlFile:
    """A parsed YAML file that remembers where every key and value came from."""

    def __init__(self, path: str, text: str) -> None:
        self.path = path
        try:
            self.node = yaml.compose(text)
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f"{path}:{mark.line + 1}" if mark else path
            raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from exc
        if data is None:
            data = {}
        if not isinstance(data, dict) or not isinstance(data.get("models", {}), dict):
            raise ConfigError(f"{path}:1: expected a mapping with a 'models:' mapping of model ids")
        unknown = set(data) - {"models"}
        if unknown:
            line = self.line_of(((sorted(unknown)[0]),)) or 1
            raise ConfigError(f"{path}:{line}: unknown top-level key {sorted(unknown)[0]!r} (only 'models')")
        self.models: dict[str, Any] = data.get("models") or {}

    def line_of(self, loc: _Loc) -> int | None:
        """1-based line of the deepest node along ``loc``, or None if even the first key is absent."""
        return self.locate(loc)[0]

    def locate(self, loc: _Loc) -> tuple[int | None, int]:
        """(line of the deepest node found along ``loc``, how many parts of ``loc`` matched)."""
        node, line = self.node, None
        for depth, part in enumerate(loc):
            if isinstance(node, yaml.MappingNode):
                for key_node, value_node in node.value:
                    if str(key_node.value) == str(part):
                        line, node = key_node.start_mark.line + 1, value_node
                        break
                else:
                    return line, depth
            elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
                node = node.value[part]
                line = node.start_mark.line + 1
            else:
                return line, depth
        return line, len(loc)


def _deep_merge(base: dict, override: dict) -> dict:
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = _deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _first_message(exc: ValidationError) -> str:
    error = exc.errors()[0]
    where = ".".join(str(p) for p in error["loc"])
    return f"{where}: {error['msg']}" if where else error["msg"]


def _error_location(files: list[_YamlFile], loc: _Loc) -> str:
    """file:line of the most specific place; on a tie the later file (the override) wins."""
    best: tuple[int, str, int] | None = None
    for file in files:
        line, depth = file.locate(loc)
        if line is not None and (best is None or depth >= best[0]):
            best = (depth, file.path, line)
    return f"{best[1]}:{best[2]}" if best else files[-1].path


def shipped_registry_text() -> tuple[str, str]:
    ref = resources.files("memesearch") / "models.yml"
    return str(ref), ref.read_text(encoding="utf-8")


def load_registry(user_file: Path | None = None) -> dict[str, ModelSpec]:
    """All model specs: shipped entries, overridden per model id by ``user_file``."""
    files = [_YamlFile(*shipped_registry_text())]
    if user_file is not None and user_file.is_file():
        files.append(_YamlFile(str(user_file), user_file.read_text(encoding="utf-8")))
    merged: dict[str, dict] = {}
    for file in files:
        for model_id, entry in file.models.items():
            if not isinstance(entry, dict):
                line = file.line_of(("models", model_id)) or 1
                raise ConfigError(f"{file.path}:{line}: model {model_id!r} must be a mapping")
            merged[str(model_id)] = _deep_merge(merged.get(str(model_id), {}), entry)
    specs: dict[str, ModelSpec] = {}
    for model_id, entry in merged.items():
        try:
            specs[model_id] = ModelSpec.model_validate({**entry, "id": model_id})
        except ValidationError as exc:
            error = exc.errors()[0]
            loc = ("models", model_id, *_clean_loc(error["loc"]))
            where = _error_location(files, loc)
            field = ".".join(str(p) for p in _clean_loc(error["loc"])) or "(entry)"
            raise ConfigError(
                f"{where}: model {model_id!r}, {field}: {error['msg']}",
                hint="see the comments at the top of the shipped models.yml for the allowed keys",
            ) from exc
    return specs


def _clean_loc(loc: tuple) -> _Loc:
    # pydantic inserts validator names (e.g. 'function-after[...]') into locations of
    # nested model validators; they are not YAML keys.
    return tuple(p for p in loc if not (isinstance(p, str) and "[" in p))


def user_registry_path(home: Path) -> Path:
    return home / "models.yml"


def list_specs(home: Path | None = None) -> list[ModelSpec]:
    registry = load_registry(user_registry_path(home) if home else None)
    return list(registry.values())


def get_spec(model_id: str, home: Path | None = None) -> ModelSpec:
    registry = load_registry(user_registry_path(home) if home else None)
    try:
        return registry[model_id]
    except KeyError:
        raise NotFoundError(
            f"unknown model {model_id!r}",
            hint=f"known models: {', '.join(sorted(registry))} (see `memesearch models list`)",
        ) from None
