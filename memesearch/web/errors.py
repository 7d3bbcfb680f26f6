"""The one place HTTP errors are rendered: JSON for the API, a friendly page for people.

``MemeSearchError.status`` becomes the HTTP status; framework errors (unknown
route, malformed parameters) and bugs take the same path, and a bug never
shows its traceback to the user (it goes to the server log instead).
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from memesearch.errors import MemeSearchError

log = logging.getLogger(__name__)

_TITLES = {400: "Bad request", 401: "Log in first", 403: "Not allowed", 404: "Not found", 405: "Method not allowed",
           409: "Not ready yet", 413: "Too large", 422: "That did not work", 500: "Something broke", 503: "Not available right now"}


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
                   details: str | None = None, action: dict | None = None) -> Response:
    """``details`` (technical text) and ``action`` (a button the page can offer, such as
    downloading a model) are added to the JSON only when the error has them."""
    if wants_json(request):
        body = {"error": message, "status": status}
        if hint:
            body["hint"] = hint
        if details:
            body["details"] = details
        if action:
            body["action"] = action
        return JSONResponse(body, status_code=status)
    return render_error_page(request, status, message, hint, details, action)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error.get("loc", ()) if p not in ("body", "query", "path"))
        parts.append(f"{where}: {error.get('msg', 'invalid')}" if where else error.get("msg", "invalid"))
    return "invalid request: " + "; ".join(parts)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MemeSearchError)
    async def _memesearch_error(request: Request, exc: MemeSearchError) -> Response:
        if exc.status >= 500:
            log.warning("%s %s failed: %s", request.method, request.url.path, exc)
        return error_response(request, exc.status, exc.message, exc.hint, exc.details, exc.action)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> Response:
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = f"there is nothing at {request.url.path}"
        return error_response(request, exc.status_code, message)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(request: Request, exc: RequestValidationError) -> Response:
        return error_response(request, 422, _validation_message(exc))

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> Response:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return error_response(request, 500, "an unexpected error happened; the details are in the server log")
