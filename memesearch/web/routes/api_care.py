"""JSON API for library care: tags (rename, merge, delete, colour, clean up), removing memes, settings."""

from __future__ import annotations

from dataclasses import asdict
from typing import TYPE_CHECKING

from fastapi import APIRouter, Request

from memesearch import saved_settings
from memesearch.errors import InvalidInputError, NotFoundError
from memesearch.library.removal import remove_memes
from memesearch.library.tag_colors import TAG_COLORS
from memesearch.web import jobs_bridge, preferences
from memesearch.web.api_schemas import ApiEndpointPut, MemeIds, SettingsPut, TagPatch
from memesearch.web.deps import core_of

if TYPE_CHECKING:
    from memesearch.store.base import Store

router = APIRouter(prefix="/api")


# -- tags ------------------------------------------------------------------------------
def tags_payload(store: Store) -> dict:
    return {"tags": [asdict(t) for t in store.list_tag_details()], "colors": list(TAG_COLORS)}


@router.get("/tag-details")
def tag_details(request: Request) -> dict:
    """Every tag (unused ones too) with its meme count and colour: what the Tags page shows."""
    return tags_payload(core_of(request).store)


def change_tag(core, name: str, new_name=None, color=..., ) -> dict:
    """Rename/merge and/or recolour one tag; the shared step of the API and the Tags page form."""
    store = core.store
    outcome = "unchanged"
    if new_name is not None:
        if not isinstance(new_name, str):
            raise InvalidInputError("name must be text")
        outcome = store.rename_tag(name, new_name)
        name = new_name
    if color is not ...:
        if color is not None and not isinstance(color, str):
            raise InvalidInputError("color must be a palette name or null")
        store.set_tag_color(name, color)
    if outcome != "unchanged":
        jobs_bridge.refresh_embeddings(core)  # tags are part of each meme's searchable text
    return {"result": outcome}


@router.patch("/tags/{name:path}")
def patch_tag(request: Request, name: str, body: TagPatch) -> dict:
    """``{"name": "new name"}`` renames (onto an existing tag: merges), ``{"color": "blue" | null}`` recolours."""
    core = core_of(request)
    result = change_tag(core, name, body.name, body.color if "color" in body.model_fields_set else ...)
    return result | tags_payload(core.store)


@router.delete("/tags/{name:path}")
def delete_tag(request: Request, name: str) -> dict:
    core = core_of(request)
    memes = core.store.delete_tag(name)
    if memes:
        jobs_bridge.refresh_embeddings(core)
    return {"deleted": name.strip(), "memes": memes} | tags_payload(core.store)


@router.post("/tag-cleanup")
def clean_unused_tags(request: Request) -> dict:
    """Delete every tag that no meme carries."""
    store = core_of(request).store
    return {"deleted": store.delete_unused_tags()} | tags_payload(store)


# -- removing memes ----------------------------------------------------------------------
@router.delete("/memes/{meme_id}")
def delete_meme(request: Request, meme_id: int) -> dict:
    """Remove one meme from the library (404 if unknown). Its file is deleted only if it is an upload."""
    core = core_of(request)
    core.store.get_meme(meme_id)
    return remove_memes(core.store, core.settings, [meme_id]).as_dict()


@router.post("/memes/remove")
def remove_many(request: Request, body: MemeIds) -> dict:
    """``{"ids": [1, 2, ...]}``: remove several memes at once (at most 1000); unknown ids are listed in
    ``not_found``."""
    core = core_of(request)
    return remove_memes(core.store, core.settings, body.ids).as_dict()


# -- settings ----------------------------------------------------------------------------
def settings_payload(core) -> dict:
    from memesearch.web.models_info import offered_caption_models

    return {"caption_model": core.settings.caption_model, "caption_models": offered_caption_models(core.settings),
            "openai": saved_settings.api_endpoint(core.settings.home).public()}


@router.get("/settings")
def get_settings(request: Request) -> dict:
    """The saved settings; the API key is never sent back, only whether one is set."""
    return settings_payload(core_of(request))


def save_settings(core, *, caption_model=None, base_url=None, model=None, api_key=None, remove_key=False) -> None:
    """Validate everything first, then save: a bad field changes nothing."""
    from memesearch.web.models_info import offered_caption_models

    for field, value in (("caption_model", caption_model), ("base_url", base_url), ("model", model), ("api_key", api_key)):
        if value is not None and not isinstance(value, str):
            raise InvalidInputError(f"{field} must be text")
    if caption_model is not None and caption_model not in offered_caption_models(core.settings):
        raise NotFoundError(f"unknown caption model {caption_model!r}",
                                hint="choose one of: " + ", ".join(offered_caption_models(core.settings)))
    home = core.settings.home
    if base_url is not None or model is not None or api_key or remove_key:
        current = saved_settings.api_endpoint(home)
        saved_settings.save_api_endpoint(home, base_url=current.base_url if base_url is None else base_url,
                                         model=current.model if model is None else model,
                                         api_key=api_key, remove_key=remove_key)
    if caption_model is not None:
        preferences.save_default_model(core.settings, caption_model)


@router.put("/settings")
def put_settings(request: Request, body: SettingsPut) -> dict:
    """``{"caption_model", "openai": {"base_url", "model", "api_key", "remove_key"}}``; fields left out
    stay as they are, an empty ``api_key`` keeps the saved key."""
    openai = body.openai or ApiEndpointPut()
    core = core_of(request)
    save_settings(core, caption_model=body.caption_model, base_url=openai.base_url,
                  model=openai.model, api_key=openai.api_key, remove_key=openai.remove_key)
    return settings_payload(core)
