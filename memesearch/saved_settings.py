"""Settings saved from the web Settings page: the OpenAI-compatible caption endpoint.

Stored in ``<data dir>/settings.json`` with owner-only permissions (0600), because
it can hold an API key. The key is write-only for the web app: pages and the
JSON API only ever say whether one is set. The registry's ``openai`` model (and
every model that falls back to its API settings) reads these values through
``ml.chain.api_source_for``; empty values leave ``models.yml`` in charge, and a
saved key wins over the ``MEMESEARCH_OPENAI_API_KEY`` environment variable.
"""

from __future__ import annotations

import json
import os
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from memesearch.errors import InvalidInputError

FILE_NAME = "settings.json"
MAX_URL_CHARS = 500
MAX_MODEL_CHARS = 200
MAX_KEY_CHARS = 1000


@dataclass
class ApiEndpoint:
    base_url: str = ""
    model: str = ""
    api_key: str = ""

    def public(self) -> dict:
        """What may be shown back: never the key itself."""
        return {"base_url": self.base_url, "model": self.model, "api_key_set": bool(self.api_key)}


def path_of(home: Path) -> Path:
    return Path(home) / FILE_NAME


def load(home: Path) -> dict:
    try:
        data = json.loads(path_of(home).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write(home: Path, data: dict) -> None:
    """Atomically, and readable by the owner only from the first byte on."""
    target = path_of(home)
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=target.parent, prefix=".settings-")  # mkstemp creates it 0600
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            json.dump(data, out, indent=2)
        os.chmod(temp, 0o600)
        os.replace(temp, target)
    finally:
        Path(temp).unlink(missing_ok=True)


def api_endpoint(home: Path) -> ApiEndpoint:
    saved = load(home).get("openai") or {}
    if not isinstance(saved, dict):
        return ApiEndpoint()
    return ApiEndpoint(**{k: str(saved.get(k) or "") for k in ("base_url", "model", "api_key")})


def clean_base_url(value: str) -> str:
    value = (value or "").strip()
    if not value:
        return ""
    parts = urlsplit(value)
    if len(value) > MAX_URL_CHARS or parts.scheme not in ("http", "https") or not parts.netloc or _has_control(value) \
            or " " in value:
        raise InvalidInputError(f"the endpoint URL must be an http:// or https:// address, not {value[:80]!r}",
                                hint="for example https://api.openai.com/v1 or http://localhost:11434/v1")
    return value.rstrip("/")


def _clean_plain(value: str, field: str, limit: int) -> str:
    value = (value or "").strip()
    if len(value) > limit or _has_control(value):
        raise InvalidInputError(f"the {field} must be at most {limit} characters without control characters")
    return value


def _has_control(value: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" for ch in value)


def save_api_endpoint(home: Path, *, base_url: str, model: str, api_key: str | None = None,
                      remove_key: bool = False) -> ApiEndpoint:
    """Validate and save. ``api_key`` None or empty keeps the saved key; ``remove_key`` clears it."""
    current = api_endpoint(home)
    key = current.api_key
    if remove_key:
        key = ""
    elif api_key and api_key.strip():
        key = _clean_plain(api_key, "API key", MAX_KEY_CHARS)
        if any(ch.isspace() for ch in key):
            raise InvalidInputError("the API key cannot contain spaces")
    endpoint = ApiEndpoint(base_url=clean_base_url(base_url), model=_clean_plain(model, "model name", MAX_MODEL_CHARS),
                           api_key=key)
    data = load(home) | {"openai": {"base_url": endpoint.base_url, "model": endpoint.model, "api_key": endpoint.api_key}}
    _write(home, data)
    return endpoint
