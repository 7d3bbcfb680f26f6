"""Pages for library care: Tags and Settings, plus the meme page's "remove" form.

Plain HTML forms (CSRF token in a hidden field) that work without JavaScript:
a successful change redirects back with a short notice (303), a refused one
re-renders the page with the reason and status 422, so nothing typed is lost.
"""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlencode

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse

from memesearch import saved_settings
from memesearch.errors import MemeSearchError
from memesearch.library.removal import owned_by_app, remove_memes
from memesearch.library.tag_colors import TAG_COLORS
from memesearch.text import MAX_TAG_CHARS
from memesearch.web.deps import core_of, render
from memesearch.web.routes.api_care import change_tag, save_settings

router = APIRouter()


def _back(path: str, notice: str) -> RedirectResponse:
    return RedirectResponse(f"{path}?{urlencode({'notice': notice})}", status_code=303)


# -- tags -------------------------------------------------------------------------------
def _tags_page(request: Request, notice: str = "", error: str = "", status_code: int = 200):
    store = core_of(request).store
    tags = store.list_tag_details()
    return render(request, "tags.html", {
        "tags": tags, "colors": TAG_COLORS, "unused": sum(1 for t in tags if t.count == 0),
        "notice": notice[:200], "error": error, "max_chars": MAX_TAG_CHARS,
    }, status_code=status_code)


@router.get("/tags")
def tags_page(request: Request, notice: str = ""):
    return _tags_page(request, notice=notice)


def _refused(request: Request, exc: MemeSearchError):
    message = f"{exc.message} ({exc.hint})" if exc.hint else exc.message
    return _tags_page(request, error=message, status_code=exc.status if 400 <= exc.status < 500 else 422)


@router.post("/tags/rename")
def rename_tag_form(request: Request, name: Annotated[str, Form()] = "", new_name: Annotated[str, Form()] = ""):
    try:
        outcome = change_tag(core_of(request), name, new_name)["result"]
    except MemeSearchError as exc:
        return _refused(request, exc)
    text = {"merged": f"Merged #{name} into #{new_name.strip()}", "renamed": f"Renamed #{name} to #{new_name.strip()}"}
    return _back("/tags", text.get(outcome, "Nothing to change"))


@router.post("/tags/color")
def color_tag_form(request: Request, name: Annotated[str, Form()] = "", color: Annotated[str, Form()] = ""):
    try:
        change_tag(core_of(request), name, color=color or None)
    except MemeSearchError as exc:
        return _refused(request, exc)
    return _back("/tags", f"#{name}: {color or 'no'} colour")


@router.post("/tags/delete")
def delete_tag_form(request: Request, name: Annotated[str, Form()] = ""):
    from memesearch.web import jobs_bridge

    core = core_of(request)
    try:
        memes = core.store.delete_tag(name)
    except MemeSearchError as exc:
        return _refused(request, exc)
    if memes:
        jobs_bridge.refresh_embeddings(core)
    return _back("/tags", f"Deleted #{name} from {memes} meme{'s' if memes != 1 else ''}")


@router.post("/tags/cleanup")
def cleanup_tags_form(request: Request):
    deleted = core_of(request).store.delete_unused_tags()
    return _back("/tags", f"Deleted {len(deleted)} unused tag{'s' if len(deleted) != 1 else ''}")


# -- removing one meme from its page ----------------------------------------------------------
@router.post("/memes/{meme_id}/remove")
def remove_meme_form(request: Request, meme_id: int):
    core = core_of(request)
    meme = core.store.get_meme(meme_id)  # 404 page if unknown
    remove_memes(core.store, core.settings, [meme_id])
    name = meme.path.rsplit("/", 1)[-1]
    return RedirectResponse(f"/?{urlencode({'notice': f'Removed {name} from the library'})}", status_code=303)


def removal_note(core, meme) -> str:
    """What removing this meme does to its file, for the meme page."""
    if owned_by_app(meme.path, core.settings):
        return "This image was uploaded here: removing it also deletes the uploaded file."
    return "The file stays on your disk; rescans skip it (memesearch restore-meme brings it back)."


# -- settings ----------------------------------------------------------------------------------
def _settings_page(request: Request, notice: str = "", error: str = "", form: dict | None = None, status_code: int = 200):
    from memesearch.web.models_info import offered_caption_models

    core = core_of(request)
    endpoint = saved_settings.api_endpoint(core.settings.home)
    return render(request, "settings.html", {
        "caption_models": offered_caption_models(core.settings), "caption_model": core.settings.caption_model,
        "endpoint": endpoint.public(), "form": form or {}, "notice": notice[:200], "error": error,
    }, status_code=status_code)


@router.get("/settings")
def settings_page(request: Request, notice: str = ""):
    return _settings_page(request, notice=notice)


@router.post("/settings")
def save_settings_form(
    request: Request,
    caption_model: Annotated[str, Form()] = "",
    base_url: Annotated[str, Form()] = "",
    model: Annotated[str, Form()] = "",
    api_key: Annotated[str, Form()] = "",
):
    core = core_of(request)
    try:
        save_settings(core, caption_model=caption_model or None, base_url=base_url, model=model, api_key=api_key)
    except MemeSearchError as exc:
        message = f"{exc.message} ({exc.hint})" if exc.hint else exc.message
        return _settings_page(request, error=message, status_code=422,
                              form={"caption_model": caption_model, "base_url": base_url, "model": model})
    return _back("/settings", "Settings saved")


@router.post("/settings/remove-key")
def remove_key_form(request: Request):
    save_settings(core_of(request), remove_key=True)
    return _back("/settings", "API key removed")
