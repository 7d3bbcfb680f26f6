"""OpenAPI descriptions of what the JSON API reads and answers, for clients and schema checks.

The routes parse their JSON bodies themselves (``deps.json_body``, so every mistake gets one
clear sentence); these schemas only document the shapes. Every error answer has one shape.
"""

from __future__ import annotations

from pydantic import BaseModel, Field

MAX_DESCRIPTION_CHARS = 4000
MAX_TAGS = 50


class ErrorBody(BaseModel):
    error: str = Field(description="What went wrong, in one sentence.")
    status: int = Field(description="The HTTP status, repeated.")
    hint: str | None = Field(default=None, description="How to fix it, when there is something to do.")


ERROR_RESPONSES = {status: {"model": ErrorBody, "description": text} for status, text in (
    (401, "Log in or send the API token."), (403, "Not allowed (CSRF token, origin)."), (404, "No such meme, folder, run or model."),
    (413, "Upload too large."), (422, "Unusable input: the error says which field and why."),
    (500, "A bug; the details are in the server log."), (503, "Not available now (read-only data dir, busy model)."),
    (507, "The disk is full; nothing was lost."),
)}


def json_body(schema: dict, required: bool = True) -> dict:
    """``openapi_extra`` for a route that reads a JSON object body shaped like ``schema``."""
    return {"requestBody": {"required": required, "content": {"application/json": {"schema": schema}}}}


_TAGS = {"type": "array", "maxItems": MAX_TAGS, "items": {"type": "string", "minLength": 1, "maxLength": 64}}

MEME_PATCH = json_body({
    "type": "object", "additionalProperties": False, "minProperties": 1,
    "properties": {
        "user_description": {"type": "string", "maxLength": MAX_DESCRIPTION_CHARS},
        "description": {"type": "string", "maxLength": MAX_DESCRIPTION_CHARS, "description": "Alias of user_description."},
        "tags": {**_TAGS, "description": "Replaces the meme's tags."},
        "add_tags": _TAGS, "remove_tags": _TAGS,
    },
})
DESCRIBE = json_body({"type": "object", "properties": {"model": {"type": "string", "description": "Caption model id."}}})
FOLDER_ADD = json_body({
    "type": "object", "required": ["path"],
    "properties": {
        "path": {"type": "string", "minLength": 1, "description": "Absolute path of an existing folder on the server."},
        "auto_scan_minutes": {"type": "integer", "minimum": 0, "maximum": 10080},
        "scan": {"type": "boolean", "default": True},
    },
})
FOLDER_PATCH = json_body({
    "type": "object", "required": ["auto_scan_minutes"], "additionalProperties": False,
    "properties": {"auto_scan_minutes": {"type": "integer", "minimum": 0, "maximum": 10080}},
})
JOB_START = json_body({
    "type": "object", "required": ["kind"],
    "properties": {
        "kind": {"type": "string", "enum": ["describe", "index", "ocr", "embed"]},
        "model": {"type": "string"}, "meme_ids": {"type": "array", "items": {"type": "integer"}},
        "folder_id": {"type": "integer"},
    },
})
DEFAULT_MODEL = json_body({"type": "object", "required": ["model"], "properties": {"model": {"type": "string"}}})
UPLOAD = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": ["files"],
    "properties": {"files": {"type": "array", "minItems": 1, "items": {"type": "string", "format": "binary"},
                             "description": "Image files (JPEG, PNG, WebP, GIF, BMP)."}},
}}}}}
