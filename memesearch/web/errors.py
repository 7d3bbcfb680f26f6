"""The one place HTTP errors are rendered: problem details (RFC 9457) for the API, a page for people.

``MemeSearchError.status`` becomes the HTTP status; framework errors (unknown route, wrong
method, malformed parameters) and bugs take the same path, and a bug never shows its
traceback to the user (it goes to the server log instead). The JSON body is built by
memesearch/problems.py, shared with the ML service.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from memesearch import problems
from memesearch.errors import MemeSearchError

log = logging.getLogger(__name__)

_TITLES = {400: "Bad request", 401: "Log in first", 403: "Not allowed", 404: "Not found", 405: "Method not allowed",
           409: "Not ready yet", 413: "Too large", 422: "That did not work", 429: "Too many attempts",
           500: "Something broke", 503: "Not available right now"}

# FastAPI answers a body it cannot decode (not UTF-8) with this bare 400; it is unusable input.
_UNPARSABLE_BODY = "There was an error parsing the body"


def wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or "text/html" not in request.headers.get("accept", "")


def render_error_page(request: Request, status: int, message: str, hint: str | None,
                      details: str | None = None, action: dict | None = None) -> Response:
    templates = request.app.state.templates
    return templates.TemplateResponse(
        request, "error.html", {"status": status, "title": _TITLES.get(status, "Error"), "message": message, "hint": hint,
                                "details": details, "action": action},
        status_code=status,
    )


def error_response(request: Request, status: int, message: str, hint: str | None = None,
                   details: str | None = None, action: dict | None = None, *, slug: str | None = None,
                   headers: dict[str, str] | None = None, **extensions: object) -> Response:
    """A problem+json answer for API clients, the error page for people. ``details`` (technical
    text) becomes ``technical_details``; ``action`` (a button the page can offer, such as downloading
    a model) and ``extensions`` are added only when given."""
    if wants_json(request):
        return problems.problem_response(status, message, slug=slug, instance=request.url.path, headers=headers,
                                         **problems.error_extensions(hint, action, details), **extensions)
    page = render_error_page(request, status, message, hint, details, action)
    page.headers.update(headers or {})
    return page


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MemeSearchError)
    async def _memesearch_error(request: Request, exc: MemeSearchError) -> Response:
        if exc.status >= 500:
            log.warning("%s %s failed: %s", request.method, request.url.path, exc)
        return error_response(request, exc.status, exc.message, exc.hint, exc.details, exc.action,
                              slug=problems.slug_for_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 400 and exc.detail == _UNPARSABLE_BODY:
            return error_response(request, 422, "the request body must be a JSON object in UTF-8")
        message = problems.http_detail(exc.status_code, exc.detail, request.method, request.url.path)
        return error_response(request, exc.status_code, message, headers=getattr(exc, "headers", None))

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        fields = problems.validation_errors(list(exc.errors()))
        return error_response(request, 422, problems.validation_sentence(fields), errors=fields)

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "an unexpected error happened; the details are in the server log")
