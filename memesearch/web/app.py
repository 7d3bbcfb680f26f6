"""The FastAPI application for people: pages (Jinja2 + htmx) and the JSON API under /api."""

from __future__ import annotations

import time
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates

from memesearch import __version__
from memesearch.app import Core
from memesearch.config import Settings
from memesearch.web import preferences
from memesearch.web.errors import install_error_handlers
from memesearch.web.security import Guard, SecurityMiddleware, csrf_token_of, load_secret
from memesearch.web.views import human_size

HERE = Path(__file__).parent


def _templates() -> Jinja2Templates:
    templates = Jinja2Templates(directory=str(HERE / "templates"))
    templates.env.globals.update(csrf_token=csrf_token_of, version=__version__, human_size=human_size)
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


def create_app(settings: Settings | None = None, *, core: Core | None = None) -> FastAPI:
    """The web app over ``core`` (built from ``settings`` when not given)."""
    if core is None:
        core = Core(settings or Settings())
    settings = core.settings
    preferences.apply(settings)
    # No Swagger UI: it loads its assets from a CDN. The schema itself is served.
    app = FastAPI(title="memesearch", version=__version__, docs_url=None, redoc_url=None,
                  openapi_url="/api/openapi.json")
    app.state.core = core
    app.state.templates = _templates()
    # Tag chips everywhere take their colour from here (lower-cased name -> palette name).
    app.state.templates.env.globals["tag_colors"] = lambda: core.store.tag_colors()
    app.state.guard = Guard(load_secret(settings.secret_key_path), settings.password, settings.api_token)
    app.state.background = {}
    app.add_middleware(SecurityMiddleware, guard=app.state.guard)
    install_error_handlers(app)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    from memesearch.web.routes import api_care, api_jobs, api_library, api_memes, files, pages, pages_admin, pages_care

    for module in (pages, pages_admin, pages_care, files, api_memes, api_library, api_jobs, api_care):
        app.include_router(module.router)
    return app
