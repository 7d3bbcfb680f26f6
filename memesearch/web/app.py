"""The FastAPI application for people: pages (Jinja2 + htmx) and the JSON API under /api."""

from __future__ import annotations

import logging
import secrets
import threading
import time
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from memesearch import __version__, problems
from memesearch.app import Core
from memesearch.config import Settings
from memesearch.unicode_input import Utf8UrlMiddleware
from memesearch.web import preferences
from memesearch.web.api_schemas import ERROR_RESPONSES
from memesearch.web.errors import error_response, install_error_handlers
from memesearch.web.proxies import parse_networks
from memesearch.web.security import SESSION_MAX_AGE_S, Guard, SecurityMiddleware, csrf_token_of, load_secret
from memesearch.web.sessions import SessionStore, password_fingerprint
from memesearch.web.throttle import LoginThrottle
from memesearch.web.views import active_runs, human_size

HERE = Path(__file__).parent


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(csrf_token=csrf_token_of, version=__version__, human_size=human_size,
                                 active_runs=active_runs)
    templates.env.filters["ago"] = _ago
    return templates


def _ago(timestamp: float | None) -> str:
    if not timestamp:
        return "never"
    seconds = max(0, time.time() - timestamp)
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


# Requests that change nothing on the server, or only the caller's own session cookie.
_READ_METHODS = {"GET", "HEAD", "OPTIONS"}
_SESSION_PATHS = {"/login", "/logout"}
#: POSTs that only read the library (a search by picture sends the picture in the body).
_READING_POSTS = {"/api/search/image", "/search/image"}


class ReadOnlyMiddleware:
    """A read-only data dir: pages and searches work; every request that would change the
    library gets a 503 with the reason, before any work starts."""

    def __init__(self, app, home: str) -> None:
        self.app = app
        self.home = home

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http" and scope["method"] not in _READ_METHODS and scope["path"] not in _SESSION_PATHS | _READING_POSTS:
            from starlette.requests import Request

            from memesearch.readonly import read_only_error

            error = read_only_error(self.home)
            response = error_response(Request(scope, receive), error.status, error.message, error.hint,
                                      slug=problems.slug_for_error(error))
            await response(scope, receive, send)
            return
        await self.app(scope, receive, send)


def _secret(core: Core) -> bytes:
    """The signing key; a read-only data dir without one gets a key for this run only."""
    path = core.settings.secret_key_path
    if core.read_only and not path.is_file():
        logging.getLogger(__name__).warning("%s is read-only: logins last until the server stops", core.settings.home)
        return secrets.token_hex(32).encode()
    return load_secret(path)


def create_app(settings: Settings | None = None, *, core: Core | None = None) -> FastAPI:
    """The web app over ``core`` (built from ``settings`` when not given)."""
    if core is None:
        core = Core(settings or Settings())
    settings = core.settings
    preferences.apply(settings)
    # No Swagger UI: it loads its assets from a CDN. The schema itself is served.
    app = FastAPI(title="memesearch", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url="/api/openapi.json", responses=ERROR_RESPONSES)
    app.state.core = core
    app.state.templates = _templates()
    # Tag chips everywhere take their colour from here (lower-cased name -> palette name).
    app.state.templates.env.globals["tag_colors"] = lambda: core.store.tag_colors()
    app.state.guard = _guard(core)
    app.state.background = {}
    if core.read_only:
        app.add_middleware(ReadOnlyMiddleware, home=str(settings.home))
    app.add_middleware(Utf8UrlMiddleware)
    #: Set once the query embedder is loaded (`memesearch serve` preloads it: memesearch.web.warmup).
    app.state.search_warm = threading.Event()
    app.add_middleware(SecurityMiddleware, guard=app.state.guard)
    install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    from memesearch.web.routes import (api_care, api_jobs, api_library, api_memes, files, pages, pages_admin,
                                       pages_care, search_image, templates)

    for module in (pages, pages_admin, pages_care, files, api_memes, api_library, api_jobs, api_care, templates,
                   search_image):
        app.include_router(module.router)
    return app


def _guard(core: Core) -> Guard:
    settings = core.settings
    secret = _secret(core)
    # No password, no logins: skip the deliberately slow scrypt.
    fingerprint = password_fingerprint(settings.password, secret) if settings.password else "no password"
    return Guard(secret, settings.password, settings.api_token,
                 sessions=SessionStore(settings.sessions_path, fingerprint, SESSION_MAX_AGE_S),
                 throttle=LoginThrottle(settings.login_limits, settings.login_global_limits),
                 trusted_proxies=parse_networks(settings.trusted_proxies))
