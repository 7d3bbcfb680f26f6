"""Settings: one typed place for every knob.

Values come from (highest first) explicit arguments such as ``--data-dir``,
environment variables prefixed ``MEMESEARCH_`` (nested with ``__``), then the
defaults below. Settings are declared as data so docs and ``--help`` can be
checked against them.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from typing import Annotated

import platformdirs
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict


_RATE_LIMIT = re.compile(r"\d+\s*(?:/|per)\s*(?:\d+\s*)?(?:second|minute|hour|day|month|year)s?", re.IGNORECASE)


def default_home() -> Path:
    return Path(platformdirs.user_data_dir("memesearch", appauthor=False))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MEMESEARCH_", env_nested_delimiter="__", extra="ignore")

    home: Path = Field(default_factory=default_home, description="Data directory (database, models, thumbnails).")
    database_url: str = Field(
        default="",
        description="Empty: SQLite file in the data dir. postgresql://... selects the Postgres store.",
    )
    embed_model: str = Field(default="all-minilm-l6-v2", description="Text embedding model.")
    caption_model: str = Field(default="smolvlm-256m", description="Default image-to-text model id.")
    visual_model: str = Field(
        default="clip-vit-b-32",
        description="Image-text embedding model of visual search (family clip). Used only once downloaded "
                    "(`memesearch models pull clip-vit-b-32`); empty or `none` turns visual search off.",
    )
    dev: bool = Field(
        default=False,
        description=(
            "Developer mode: offer the `fake` test captioner in menus, settings and `models list`; "
            "without it `fake` cannot be chosen (it writes colour and size notes, not descriptions)."
        ),
    )
    ocr_enabled: bool = Field(default=True, description="Run OCR while indexing.")
    ocr_min_confidence: float = Field(default=0.5, description="Drop OCR lines below this confidence.")
    ocr_int8_recognition: bool = Field(
        default=True,
        description="On CPUs with VNNI, OCR reads text lines with an int8 recogniser derived once in the models dir "
                    "(~0.8x OCR CPU; word recall +1.2 to -1.2 points against fp32 on rendered memes: docs/BENCHMARKS.md, "
                    "issue 16); false keeps fp32 recognition.",
    )
    threads: int = Field(default=0, description="Inference threads per model; 0 = onnxruntime default.")
    # Read where sessions open (ml/onnx_runtime/session.spin_mode); declared here for the docs and validation.
    spin: str = Field(
        default="run",
        description="How idle onnxruntime threads wait for the next operator. run (or true): they spin while a model "
                    "run lasts and stop when it ends, so they do not take the cores of the next model's run (1.1x the single "
                    "captions a minute, 1.4x the OCR reads a second in one process with 2 threads); never (or false): they sleep, much "
                    "faster when other work shares the cores; always: onnxruntime's own default, they spin on after a run "
                    "too (the behaviour before session 16). rapidocr's sessions follow it too "
                    "(docs/BENCHMARKS.md: CLIP levers; issue 16, session 16).",
    )
    # Off by default: streams split the cores, so a single caption (the describe button, /v1/caption)
    # runs on one stream's share (0.71x its speed) and each stream holds its own activations
    # (+~0.2 GB); bulk describe gains 1.25x (docs/BENCHMARKS.md, bulk describe levers).
    caption_streams: int = Field(
        default=1,
        description="Caption batches run at once by bulk describe, sharing one loaded model (the cores are divided "
                    "between them, so single captions get slower); 1 = off, 0 = 2 on 2 or more cores "
                    "(docs/BENCHMARKS.md, bulk describe levers).",
    )
    ocr_workers: int = Field(
        default=0,
        description="Processes that read text while indexing (one onnxruntime thread each); 0 = one per core, at most 8.",
    )
    max_megapixels: float = Field(default=64.0, description="Images larger than this are refused (decompression bombs).")
    max_file_mb: float = Field(default=100.0, description="Files larger than this are refused.")
    thumbnail_px: int = Field(default=320, description="Longest side of generated thumbnails.")
    # ML service and remote backend (issue 4).
    ml_urls: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="ML service URLs (comma-separated or a JSON list). Empty: models run in-process.",
    )
    ml_token: str = Field(default="", description="Shared secret between the app and the ML service (Bearer token).")
    ml_timeout_s: float = Field(default=120.0, description="Timeout of one request to the ML service.")
    ml_model_ttl_s: float = Field(default=300.0, description="Service: unload a model idle this long; 0 = keep forever.")
    ml_preload: Annotated[list[str], NoDecode] = Field(
        default_factory=list, description="Service: models loaded at startup (embed, ocr, or caption model ids).",
    )
    ml_max_concurrency: int = Field(default=4, description="Service: requests run at once; more get 503 + Retry-After.")
    ml_max_upload_mb: float = Field(default=25.0, description="Service: largest accepted upload.")
    # Durable background work (issue 4).
    queue_url: str = Field(default="", description="Empty: Huey SQLite queue in the data dir. redis://... : Redis.")
    job_lease_s: float = Field(default=120.0, description="A worker's claim on a meme expires after this (crash recovery).")
    job_max_attempts: int = Field(default=5, description="Transient failures (model errors) retried this often per meme.")
    job_max_wait_attempts: int = Field(default=40, description="Retries while the ML service is unreachable (backoff up to 60 s).")
    worker_concurrency: int = Field(default=1, description="Worker threads in `memesearch worker` and in-process workers.")
    password: str = Field(default="", description="Web login password; required when serving beyond loopback.")
    api_token: str = Field(default="", description="Bearer token for the JSON API (default: the password).")
    trusted_proxies: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="IPs/CIDRs of reverse proxies whose X-Forwarded-For/-Proto/-Host are believed (comma-separated or a JSON list).",
    )
    login_limits: str = Field(
        default="5/minute;20/hour;100/day",
        description="Wrong logins (or API tokens) allowed per client before HTTP 429; each tier waits longer.",
    )
    login_global_limits: str = Field(
        default="60/minute;600/hour", description="Wrong logins allowed from all clients together before HTTP 429.",
    )
    max_upload_mb: float = Field(default=25.0, description="Largest file the web upload, and a picture to search by, may be.")
    max_upload_files: int = Field(default=50, description="Most files in one upload batch.")

    @field_validator("spin", mode="before")
    @classmethod
    def _spin_mode(cls, value):
        from memesearch.ml.onnx_runtime.session import parse_spin_mode

        return parse_spin_mode(value)

    @field_validator("home", mode="before")
    @classmethod
    def _expand_home(cls, value: object) -> object:
        return Path(value).expanduser() if isinstance(value, str | Path) and str(value) else value

    @field_validator("ml_urls", "ml_preload", "trusted_proxies", mode="before")
    @classmethod
    def _split_list(cls, value: object) -> object:
        # Env values arrive as strings: accept a JSON list or "a,b".
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("max_megapixels", "max_file_mb")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be positive")
        return value

    @field_validator("trusted_proxies")
    @classmethod
    def _networks(cls, value: list[str]) -> list[str]:
        for entry in value:
            ipaddress.ip_network(entry, strict=False)  # ValueError names the bad entry
        return value

    @field_validator("login_limits", "login_global_limits")
    @classmethod
    def _rate_limits(cls, value: str) -> str:
        # The syntax of the `limits` package, checked here without importing it: building
        # Settings must stay cheap and must not read package data (every command builds them).
        for part in re.split(r"[;,]", value):
            if not _RATE_LIMIT.fullmatch(part.strip()):
                raise ValueError(f"{part.strip()!r} is not a rate limit such as 5/minute or 20 per hour")
        return value

    # Derived paths: computed, never stored, so changing `home` moves everything.
    @property
    def database_path(self) -> Path:
        return self.home / "memesearch.db"

    @property
    def models_dir(self) -> Path:
        return self.home / "models"

    @property
    def thumbnails_dir(self) -> Path:
        return self.home / "thumbnails"

    @property
    def uploads_dir(self) -> Path:
        return self.home / "uploads"

    @property
    def secret_key_path(self) -> Path:
        """Signs web session and CSRF cookies; created on first use, readable by the owner only."""
        return self.home / "web-secret.key"

    @property
    def sessions_path(self) -> Path:
        """Web login sessions (SQLite); kept apart from the library database, see web/sessions.py."""
        return self.home / "web-sessions.db"


def load_settings(data_dir: Path | str | None = None) -> Settings:
    """Settings from the environment, with ``--data-dir`` winning over MEMESEARCH_HOME."""
    settings = Settings(home=Path(data_dir)) if data_dir else Settings()
    return settings
