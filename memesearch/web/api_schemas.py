"""What the JSON API reads: one strict pydantic model per JSON request body.

The routes take these models as their body parameter, so FastAPI validates every body (a
422 problem naming each invalid field, memesearch/problems.py) and the OpenAPI document shows
each one. Every error answer has one shape: ``ERROR_RESPONSES``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from memesearch import problems
from memesearch.library.tag_colors import TAG_COLORS, clean_color
from memesearch.text import MAX_TAG_CHARS, clean_tag
from memesearch.unicode_input import check_text

MAX_DESCRIPTION_CHARS = 4000
MAX_TAGS = 50
MAX_REMOVE_IDS = 1000  # library.removal.MAX_IDS


ERROR_RESPONSES = problems.responses({
    400: "Malformed request (a multipart body that cannot be parsed).",
    401: "Log in or send the API token.", 403: "Not allowed (CSRF token, origin).", 404: "No such meme, folder, run or model.",
    405: "The path exists, but not with this method.",
    409: "The chosen model cannot run here yet (not downloaded): nothing was queued; `action` says what to do.",
    429: "Too many wrong passwords or tokens from this client: wait `Retry-After` seconds.",
    413: "Upload too large.", 422: "Unusable input: `detail` says which field and why, `errors` lists each field.",
    500: "A bug; the details are in the server log.", 503: "Not available now (read-only data dir, busy model).",
    507: "The disk is full; nothing was lost.",
})


class JsonBody(BaseModel):
    """The base of every JSON request body: text that is not valid Unicode is refused first."""

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data):
        # Before any field rule: a lone surrogate (keys too) gets its own sentence, not a pattern error.
        return check_text(data)


class _Body(JsonBody):
    # Strict: 2.0 is not a meme id and "1" is not a number of minutes.
    model_config = ConfigDict(strict=True, extra="allow")


class _SomeFields(_Body):
    """A partial update: at least one field, none unknown."""

    model_config = ConfigDict(strict=True, extra="forbid", json_schema_extra={"minProperties": 1})

    @model_validator(mode="after")
    def _not_empty(self):
        if not self.model_fields_set:
            raise ValueError(f"send at least one of: {', '.join(type(self).model_fields)}")
        return self


Tag = Annotated[str, Field(min_length=1, max_length=64)]
Tags = Annotated[list[Tag], Field(max_length=MAX_TAGS)]
Minutes = Annotated[int, Field(ge=0, le=7 * 24 * 60, description="0 turns automatic rescans off.")]


class MemePatch(_SomeFields):
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


class Pull(_Body):
    dtype: str | None = Field(default=None, description="Weights to download, e.g. int8 (default: the model's own).")


# The tag rule (text.clean_tag) as a schema: 1-50 characters, something visible, no control characters.
_NO_CONTROL = r"[^\x00-\x1f\x7f-\x9f]"
TAG_NAME_PATTERN = rf"^{_NO_CONTROL}*[^\s\x00-\x1f\x7f-\x9f]{_NO_CONTROL}*$"
TAG_COLOR_PATTERN = r"^\s*(?i:" + "|".join(TAG_COLORS) + r")?\s*$"


class TagPatch(_SomeFields):
    name: str | None = Field(default=None, max_length=MAX_TAG_CHARS, pattern=TAG_NAME_PATTERN,
                             description="New name; an existing tag's name merges the two.")
    color: str | None = Field(default=None, pattern=TAG_COLOR_PATTERN,
                              description=f"One of {', '.join(TAG_COLORS)}; null or empty for none.")

    # The tag and colour rules before the schema's patterns: their sentences say more.
    @field_validator("name", mode="before")
    @classmethod
    def _tag_rule(cls, value):
        if isinstance(value, str):
            clean_tag(value)
        return value

    @field_validator("color", mode="before")
    @classmethod
    def _color_rule(cls, value):
        if isinstance(value, str):
            clean_color(value)
        return value


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


class SettingsPut(_SomeFields):
    caption_model: str | None = Field(default=None, description="A caption model id of this server (404 if unknown).")
    openai: ApiEndpointPut | None = None


UPLOAD = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["files"],
    "properties": {"files": {"type": "array", "minItems": 1, "items": {"type": "string", "format": "binary"},
                             "description": "Image files (JPEG, PNG, WebP, GIF, BMP)."}},
}}}}}
