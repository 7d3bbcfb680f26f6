"""The one error body of both HTTP apps: RFC 9457 problem details (``application/problem+json``).

Every error answer of the web JSON API and of the ML service is an object with ``type`` (a URI
naming the kind of problem, e.g. ``/problems/bad-image``), ``title`` (that kind in words),
``status``, ``detail`` (this occurrence, one sentence) and ``instance`` (the request path), plus
extension members where they help: ``hint`` (what to do), ``errors`` (each invalid field),
``action``, ``technical_details``. Clients branch on ``type`` and ``status``, never on the wording
of ``detail`` (memesearch/ml/remote.py does exactly that).
"""

from __future__ import annotations

import json
from http import HTTPStatus

from pydantic import BaseModel, ConfigDict, Field
from starlette.responses import JSONResponse

from memesearch import errors

PROBLEM_JSON = "application/problem+json"
PREFIX = "/problems/"

#: slug -> title. The slug's URI (``/problems/<slug>``) is the stable part; titles may be reworded.
TITLES = {
    "invalid-input": "Unusable input",
    "bad-image": "Not a usable image",
    "bad-request": "Malformed request",
    "unauthorized": "Authentication required",
    "forbidden": "Not allowed",
    "not-found": "Not found",
    "method-not-allowed": "Method not allowed",
    "model-not-ready": "Model not ready",
    "too-large": "Request too large",
    "rate-limited": "Too many attempts",
    "internal": "Internal error",
    "config": "Server configuration problem",
    "model-failed": "Model failed",
    "model-unavailable": "Model unavailable",
    "busy": "Busy",
    "read-only": "Read-only data dir",
    "disk-full": "Disk full",
}

#: What an HTTP status means when nothing more specific is known.
_BY_STATUS = {400: "bad-request", 401: "unauthorized", 403: "forbidden", 404: "not-found", 405: "method-not-allowed",
              409: "model-not-ready", 413: "too-large", 422: "invalid-input", 429: "rate-limited", 500: "internal",
              503: "model-unavailable", 507: "disk-full"}

# Most specific first: the first class the exception is an instance of names its type.
_BY_CLASS: tuple[tuple[type[errors.MemeSearchError], str], ...] = (
    (errors.ImageError, "bad-image"),
    (errors.InvalidInputError, "invalid-input"),
    (errors.NotFoundError, "not-found"),
    (errors.ModelNotReadyError, "model-not-ready"),
    (errors.ReadOnlyError, "read-only"),
    (errors.ModelUnavailableError, "model-unavailable"),
    (errors.DiskFullError, "disk-full"),
    (errors.ConfigError, "config"),
)


def type_uri(slug: str) -> str:
    return PREFIX + slug


def slug_of(type_value: object) -> str | None:
    """The slug of a problem ``type`` this module defines (absolute or relative URI), else None."""
    if not isinstance(type_value, str) or PREFIX not in type_value:
        return None
    slug = type_value.rsplit(PREFIX, 1)[1]
    return slug if slug in TITLES else None


def slug_for_status(status: int) -> str | None:
    return _BY_STATUS.get(status) or ("internal" if status >= 500 else None)


def slug_for_error(exc: errors.MemeSearchError) -> str | None:
    """The problem type of a memesearch error: its own ``problem`` attribute, else its class
    (when the status is that class's usual one), else its status."""
    own = getattr(exc, "problem", None)
    if own in TITLES:
        return own
    for cls, slug in _BY_CLASS:
        if isinstance(exc, cls) and exc.status == cls.status:
            return slug
    return slug_for_status(exc.status)


def problem_body(status: int, detail: str, *, slug: str | None = None, instance: str | None = None,
                 **extensions: object) -> dict:
    """A problem object; ``slug`` defaults to the status's type."""
    slug = slug or slug_for_status(status)
    if slug is None:
        body: dict = {"type": "about:blank", "title": _phrase(status)}
    else:
        body = {"type": type_uri(slug), "title": TITLES[slug]}
    body |= {"status": status, "detail": detail}
    if instance:
        body["instance"] = instance
    return body | extensions


def problem_response(status: int, detail: str, *, slug: str | None = None, instance: str | None = None,
                     headers: dict[str, str] | None = None, **extensions: object) -> JSONResponse:
    return JSONResponse(problem_body(status, detail, slug=slug, instance=instance, **extensions),
                        status_code=status, headers=headers, media_type=PROBLEM_JSON)


def problem_bytes(status: int, detail: str, **kwargs: object) -> bytes:
    """The body for plain ASGI middleware that answers before any framework code runs."""
    return json.dumps(problem_body(status, detail, **kwargs)).encode()


def error_response(exc: errors.MemeSearchError, *, instance: str | None = None, status: int | None = None) -> JSONResponse:
    """A memesearch error as a problem: message -> detail, hint/action/details as extensions."""
    return problem_response(status or exc.status, exc.message, slug=slug_for_error(exc), instance=instance,
                            **error_extensions(exc.hint, exc.action, exc.details))


def error_extensions(hint: str | None, action: dict | None, technical_details: str | None) -> dict:
    """The optional members a memesearch error adds, only those it has."""
    found = {"hint": hint, "action": action, "technical_details": technical_details}
    return {key: value for key, value in found.items() if value}


def validation_errors(raw: list[dict]) -> list[dict]:
    """FastAPI/pydantic field errors as ``{"loc", "msg", "type"}``: never the input itself (text that
    is not valid Unicode cannot be encoded as JSON, and echoing input back helps nobody)."""
    return [{"loc": [_printable(part) if not isinstance(part, int) else part for part in error.get("loc", ())],
             "msg": _printable(_message(error)), "type": str(error.get("type", ""))} for error in raw]


def _message(error: dict) -> str:
    if error.get("type") == "extra_forbidden":
        return "unknown field"
    return str(error.get("msg", "invalid")).removeprefix("Value error, ")


def _printable(value: object) -> str:
    # A key sent as a lone surrogate would make the whole answer unencodable as UTF-8.
    return str(value).encode("utf-8", "backslashreplace").decode("utf-8")


def http_detail(status: int, detail: object, method: str, path: str) -> str:
    """A sentence for the framework's own HTTP errors (its bare "Not Found" says nothing)."""
    if status == 404 and detail == "Not Found":
        return f"there is nothing at {path}"
    if status == 405 and detail == "Method Not Allowed":
        return f"{method} is not allowed on {path}"
    return detail if isinstance(detail, str) else "request failed"


_NOT_AN_OBJECT = {"json_invalid", "model_attributes_type", "dict_type", "model_type"}


def validation_sentence(fields: list[dict]) -> str:
    """One sentence naming the first few invalid fields and why."""
    for error in fields:
        whole_body = error["loc"][:1] == ["body"] and (len(error["loc"]) == 1 or error["type"] == "json_invalid")
        if whole_body and (error["type"] in _NOT_AN_OBJECT or error["type"] == "missing"):
            return "the request body must be a JSON object"
    parts = []
    for error in fields[:5]:
        where = ".".join(str(p) for p in error["loc"] if p not in ("body", "query", "path", "header", "form"))
        parts.append(f"{where}: {error['msg']}" if where else error["msg"])
    return "invalid request: " + "; ".join(parts)


def _phrase(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Error"


class FieldError(BaseModel):
    loc: list[str | int] = Field(description="Where: e.g. [\"body\", \"tags\", 0].")
    msg: str
    type: str = Field(description="pydantic's error type, e.g. string_too_long.")


class ProblemDetails(BaseModel):
    """RFC 9457 problem details; unknown extension members may appear and should be ignored."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"additionalProperties": True})
    type: str = Field(description="URI of the problem type, e.g. /problems/bad-image (see docs/API.md).")
    title: str = Field(description="The problem type in words (the same for every occurrence).")
    status: int = Field(description="The HTTP status, repeated.")
    detail: str = Field(description="What went wrong this time, in one sentence.")
    instance: str | None = Field(default=None, description="The request path.")
    hint: str | None = Field(default=None, description="How to fix it, when there is something to do.")
    errors: list[FieldError] | None = Field(default=None, description="422: each invalid field and why.")


def responses(statuses: dict[int, str]) -> dict:
    """``responses=`` for FastAPI: every listed status documented as problem+json (only that media type)."""
    schema = inline_schema(ProblemDetails.model_json_schema())
    return {status: {"description": text, "content": {PROBLEM_JSON: {"schema": schema}}}
            for status, text in statuses.items()}


def inline_schema(schema: dict) -> dict:
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
