"""Pages people use: search, one meme, upload, login."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Query, Request
from fastapi.responses import FileResponse, RedirectResponse

from memesearch.errors import InvalidInputError
from memesearch.search.engine import MODES
from memesearch.store.templates import TemplateStore
from memesearch.web.deps import core_of, render
from memesearch.web.security import too_many_attempts
from memesearch.web.views import highlight, hit_text, meme_dict, near_duplicates, query_terms

router = APIRouter()
FAVICON = Path(__file__).resolve().parent.parent / "static" / "favicon.svg"
PAGE_SIZE = 24
TOP_TAG_CHIPS = 30


@router.get("/")
def search_page(
    request: Request,
    q: str = "",
    mode: str = "hybrid",
    tag: Annotated[list[str], Query()] = [],  # noqa: B006
    folder: Annotated[list[str], Query()] = [],  # noqa: B006
    described: str = "",
    siblings: str = "",
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
    part: str = "",
):
    """The search page; htmx asks for ``part=results`` (the result list) or ``part=more`` (next page)."""
    from memesearch.web.routes.api_memes import run_search

    if mode not in MODES:
        raise InvalidInputError(f"unknown search mode {mode!r}; choose one of {', '.join(MODES)}")
    core = core_of(request)
    result = run_search(core, q, mode, PAGE_SIZE + 1, offset, tag, folder, described or None, siblings == "1")
    more = len(result.hits) > PAGE_SIZE
    terms = query_terms(q)
    hits = [{"hit": hit, "snippet": highlight(hit_text(hit), terms)} for hit in result.hits[:PAGE_SIZE]]
    params = [("q", q), ("mode", mode)] + [("tag", t) for t in tag] + [("folder", f) for f in folder]
    if described:
        params.append(("described", described))
    if siblings == "1":
        params.append(("siblings", "1"))
    context = {
        "notice": request.query_params.get("notice", "")[:200],
        "q": q, "mode": mode, "modes": MODES, "hits": hits, "more": more, "offset": offset,
        "next_offset": offset + PAGE_SIZE, "ms": result.ms, "shown": offset + len(hits), "params": params,
        "selected_tags": tag, "selected_folders": folder, "described": described, "siblings": siblings == "1",
        "more_url": "/?" + urlencode(params + [("offset", offset + PAGE_SIZE), ("part", "more")]),
        "total": result.total, "total_is_exact": result.total_is_exact,
    }
    if part == "more":
        return render(request, "_hits.html", context)
    # Counting the library is a table scan: only needed to explain an empty result page.
    context["empty_library"] = not hits and not offset and not core.store.meme_ids()[:1]
    if not hits and not offset:
        context["suggestions"] = _no_result_suggestions(q, mode, params)
    if part == "results":
        return render(request, "_results.html", context)
    # Only tags some meme carries: an unused tag would filter to nothing.
    in_use = [(t.name, t.count) for t in core.store.list_tag_details(used_only=True)]
    tags = sorted(in_use, key=lambda item: -item[1])[:TOP_TAG_CHIPS]
    context |= {"tags": tags, "folders": core.store.list_folders()}
    return render(request, "search.html", context)


def _no_result_suggestions(q: str, mode: str, params: list[tuple[str, str]]) -> list[dict]:
    """Links for the no-results page: other modes, fewer words, and dropping the filter chips."""
    from memesearch.search.suggest import suggestions

    chips = [(key, value) for key, value in params if key in ("tag", "folder", "described")]
    links = [{"label": tip.label, "url": "/?" + urlencode([("q", tip.query), ("mode", tip.mode)] + chips)}
             for tip in suggestions(q, mode)]
    if chips:
        links.append({"label": "Search without the selected filters", "url": "/?" + urlencode([("q", q), ("mode", mode)])})
    return links


@router.get("/memes/{meme_id}")
def meme_page(request: Request, meme_id: int):
    from memesearch.web.models_info import model_ids

    core = core_of(request)
    store = core.store
    meme = store.get_meme(meme_id)
    folder = next((f for f in store.list_folders() if f.id == meme.folder_id), None)
    similar = core.search_engine.similar(meme_id, 12)
    exact = [row["id"] for row in store.memes_with_sha(meme.sha256) if row["id"] != meme_id] if meme.sha256 else []
    near = [(i, d) for i, d in near_duplicates(store, meme) if i not in exact]
    from memesearch.web.routes.pages_care import removal_note

    templates = TemplateStore(store)
    group_id = templates.group_of(meme_id)
    return render(request, "meme.html", {
        "removal_note": removal_note(core, meme),
        "template_group": templates.group(group_id) if group_id is not None else None,
        "meme": meme, "info": meme_dict(meme, folder), "folder": folder,
        "similar": [{"id": i, "score": s} for i, s in similar],
        "exact": exact, "near": [{"id": i, "distance": d} for i, d in near],
        "models": model_ids(core.settings), "default_model": core.settings.caption_model,
    })


@router.get("/upload")
def upload_page(request: Request):
    settings = core_of(request).settings
    return render(request, "upload.html", {"max_files": settings.max_upload_files, "max_mb": settings.max_upload_mb})


@router.get("/login")
def login_page(request: Request, next: str = "/"):
    return render(request, "login.html", {"next": _safe_next(next), "error": None})


@router.post("/login")
def login(request: Request, password: Annotated[str, Form()] = "", next: Annotated[str, Form()] = "/"):
    guard = request.app.state.guard
    client = request.state.view.client
    # Counted and throttled before the password is compared: past the limit even the right one waits.
    wait = guard.throttle.attempt(client)
    if wait:
        page = render(request, "login.html", {"next": _safe_next(next), "error": too_many_attempts(wait)},
                      status_code=429)
        page.headers["Retry-After"] = str(wait)
        return page
    if not guard.check_password(password):
        return render(request, "login.html", {"next": _safe_next(next), "error": "wrong password"}, status_code=401)
    guard.log_in(request)  # the middleware sets the new session cookie
    return RedirectResponse(_safe_next(next), status_code=303)


@router.post("/logout")
def logout(request: Request):
    request.app.state.guard.log_out(request)
    return RedirectResponse("/login", status_code=303)


@router.get("/healthz")
def healthz(request: Request) -> dict:
    """Up; ``search_warm``: the query model is loaded, so a search answers at full speed."""
    return {"ok": True, "search_warm": request.app.state.search_warm.is_set()}


@router.get("/favicon.ico", include_in_schema=False)
def favicon() -> FileResponse:
    """Browsers ask for /favicon.ico on their own; the icon is an SVG (linked from every page too)."""
    return FileResponse(FAVICON, media_type="image/svg+xml", headers={"Cache-Control": "public, max-age=86400"})


def _safe_next(target: str) -> str:
    """Only local paths: a login link must not redirect elsewhere."""
    return target if target.startswith("/") and not target.startswith("//") and "\\" not in target else "/"
