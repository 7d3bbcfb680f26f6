"""Settings: one typed place for every knob.

Values come from (highest first) explicit arguments such as ``--data-dir``,
environment variables prefixed ``MEMESEARCH_`` (nested with ``__``), then the
defaults below. Settings are declared as data so docs and ``--help`` can be
checked against them.
"""

from __future__ import annotations

from pathlib import Path

import platformdirs
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


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
    ocr_enabled: bool = Field(default=True, description="Run OCR while indexing.")
    ocr_min_confidence: float = Field(default=0.5, description="Drop OCR lines below this confidence.")
    threads: int = Field(default=0, description="Inference threads per model; 0 = onnxruntime default.")
    max_megapixels: float = Field(default=64.0, description="Images larger than this are refused (decompression bombs).")
    max_file_mb: float = Field(default=100.0, description="Files larger than this are refused.")
    thumbnail_px: int = Field(default=320, description="Longest side of generated thumbnails.")

    @field_validator("home", mode="before")
    @classmethod
    def _expand_home(cls, value: object) -> object:
        return Path(value).expanduser() if isinstance(value, str | Path) and str(value) else value

    @field_validator("max_megapixels", "max_file_mb")
    @classmethod
    def _positive(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be positive")
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


def load_settings(data_dir: Path | str | None = None) -> Settings:
    """Settings from the environment, with ``--data-dir`` winning over MEMESEARCH_HOME."""
    settings = Settings(home=Path(data_dir)) if data_dir else Settings()
    return settings
