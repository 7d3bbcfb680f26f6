"""OpenAPI descriptions of what the JSON API reads and answers, for clients and schema checks.

The routes parse their JSON bodies themselves (``deps.json_body``, so every mistake gets one
clear sentence); these schemas only document the shapes. Every error answer has one shape.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

from memesearch.library.tag_colors import TAG_COLORS
from memesearch.text import MAX_TAG_CHARS

MAX_DESCRIPTION_CHARS = 4000
MAX_TAGS = 50
MAX_REMOVE_IDS = 1000  # library.removal.MAX_IDS


class ErrorBody(BaseModel):
    error: str = Field(description="What went wrong, in one sentence.")
    status: int = Field(description="The HTTP status, repeated.")
    hint: str | None = Field(default=None, description="How to fix it, when there is something to do.")
    details: str | None = Field(default=None, description="Technical details (409: each backend's reason).")
    action: dict | None = Field(default=None, description="409: what the app offers, e.g. "
                                "{kind: download, model, label, size_mb}.")


ERROR_RESPONSES = {status: {"model": ErrorBody, "description": text} for status, text in (
    (400, "Malformed request (a multipart body that cannot be parsed)."),
    (401, "Log in or send the API token."), (403, "Not allowed (CSRF token, origin)."), (404, "No such meme, folder, run or model."),
    (409, "The chosen model cannot run here yet (not downloaded): nothing was queued; `action` says what to do."),
    (429, "Too many wrong passwords or tokens from this client: wait `Retry-After` seconds."),
    (413, "Upload too large."), (422, "Unusable input: the error says which field and why."),
    (500, "A bug; the details are in the server log."), (503, "Not available now (read-only data dir, busy model)."),
    (507, "The disk is full; nothing was lost."),
)}


class _Body(BaseModel):
    # Strict: 2.0 is not a meme id and "1" is not a number of minutes.
    model_config = ConfigDict(strict=True, extra="allow")


Tag = Annotated[str, Field(min_length=1, max_length=64)]
Tags = Annotated[list[Tag], Field(max_length=MAX_TAGS)]
Minutes = Annotated[int, Field(ge=0, le=7 * 24 * 60, description="0 turns automatic rescans off.")]


class MemePatch(_Body):
    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra={"minProperties": 1})
    user_description: str | None = Field(default=None, max_length=MAX_DESCRIPTION_CHARS)
    description: str | None = Field(default=None, max_length=MAX_DESCRIPTION_CHARS, description="Alias of user_description.")
    tags: Tags | None = Field(default=None, description="Replaces the meme's tags.")
    add_tags: Tags | None = None
    remove_tags: Tags | None = None


class Describe(_Body):
    model: str | None = Field(default=None, description="Caption model id (default: the configured one).")


class FolderAdd(_Body):
    path: str = Field(min_length=1, description="Absolute path of an existing folder on the server.")
    auto_scan_minutes: Minutes = 0
    scan: bool = True


class FolderPatch(_Body):
    model_config = ConfigDict(strict=True, extra="forbid")
    auto_scan_minutes: Minutes


class JobStart(_Body):
    kind: Literal["describe", "index", "ocr", "embed"]
    model: str | None = None
    meme_ids: list[int] | None = None
    folder_id: int | None = None


class DefaultModel(_Body):
    model: str


# The tag rule (text.clean_tag) as a schema: 1-50 characters, something visible, no control characters.
_NO_CONTROL = r"[^\x00-\x1f\x7f-\x9f]"
TAG_NAME_PATTERN = rf"^{_NO_CONTROL}*[^\s\x00-\x1f\x7f-\x9f]{_NO_CONTROL}*$"
TAG_COLOR_PATTERN = r"^\s*(?i:" + "|".join(TAG_COLORS) + r")?\s*$"


class TagPatch(_Body):
    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra={"minProperties": 1})
    name: str | None = Field(default=None, max_length=MAX_TAG_CHARS, pattern=TAG_NAME_PATTERN,
                             description="New name; an existing tag's name merges the two.")
    color: str | None = Field(default=None, pattern=TAG_COLOR_PATTERN,
                              description=f"One of {', '.join(TAG_COLORS)}; null or empty for none.")


class MemeIds(_Body):
    model_config = ConfigDict(strict=True, extra="forbid")
    ids: list[int] = Field(min_length=1, max_length=MAX_REMOVE_IDS, description="Ids of the memes to remove.")


# What saved_settings accepts, as patterns (the server checks the same and says why in a sentence).
URL_PATTERN = r"^\s*(https?://[A-Za-z0-9._~-]+(:[0-9]{1,5})?(/[^\s\x00-\x1f\x7f-\x9f]*)?)?\s*$"


class ApiEndpointPut(_Body):
    model_config = ConfigDict(strict=True, extra="forbid")
    base_url: str | None = Field(default=None, max_length=500, pattern=URL_PATTERN,
                                 description="OpenAI-compatible endpoint URL, http(s); empty: models.yml decides.")
    model: str | None = Field(default=None, max_length=200, pattern=rf"^{_NO_CONTROL}*$")
    api_key: str | None = Field(default=None, max_length=1000, pattern=r"^[^\s\x00-\x1f\x7f-\x9f]*$",
                                description="Write-only; empty keeps the saved key.")
    remove_key: bool = False


class SettingsPut(_Body):
    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra={"minProperties": 1})
    caption_model: str | None = Field(default=None, description="A caption model id of this server (404 if unknown).")
    openai: ApiEndpointPut | None = None


def body_of(model: type[BaseModel]) -> dict:
    """``openapi_extra`` for a route that reads a JSON object shaped like ``model``
    (the route validates with the same model: see ``deps.json_body``)."""
    return {"requestBody": {"required": True, "content": {"application/json": {"schema": _inlined(model.model_json_schema())}}}}


def _inlined(schema: dict) -> dict:
    """``schema`` with its nested models written in place: a ``#/$defs/...`` reference means
    nothing inside an OpenAPI document."""
    defs = schema.pop("$defs", {})

    def walk(node):
        if isinstance(node, dict):
            ref = node.get("$ref", "")
            if ref.startswith("#/$defs/"):
                return walk(dict(defs[ref.removeprefix("#/$defs/")]))
            return {key: walk(value) for key, value in node.items()}
        if isinstance(node, list):
            return [walk(item) for item in node]
        return node

    return walk(schema)


UPLOAD = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["files"],
    "properties": {"files": {"type": "array", "minItems": 1, "items": {"type": "string", "format": "binary"},
                             "description": "Image files (JPEG, PNG, WebP, GIF, BMP)."}},
}}}}}
