"""Choices made in the web UI that must survive a restart (the default caption model).

Stored as a small JSON file in the data dir; environment variables still set
the starting value, a choice made in the UI wins afterwards.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from memesearch.config import Settings


def _path(settings: Settings) -> Path:
    return settings.home / "web-preferences.json"


def load(settings: Settings) -> dict:
    try:
        return json.loads(_path(settings).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def apply(settings: Settings) -> None:
    chosen = load(settings).get("caption_model")
    if isinstance(chosen, str) and chosen:
        settings.caption_model = chosen


def save_default_model(settings: Settings, model_id: str) -> None:
    data = load(settings) | {"caption_model": model_id}
    path = _path(settings)
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(data), encoding="utf-8")
    os.replace(partial, path)
    settings.caption_model = model_id
