"""Template groups on the web: the Templates page, one group's page, and their JSON API."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Form, Request
from fastapi.responses import RedirectResponse
from pydantic import Field

from memesearch.store.templates import MAX_NAME, TemplateStore
from memesearch.templates.naming import suggest_name
from memesearch.web.api_schemas import JsonBody
from memesearch.web.deps import core_of, render

router = APIRouter()


class GroupName(JsonBody):
    name: Annotated[str | None, Field(max_length=MAX_NAME, description="Empty or null clears the name.")] = None


class GroupTags(JsonBody):
    tags: Annotated[list[str], Field(min_length=1, max_length=50)]


def _member_text(meme) -> str:
    return " ".join([meme.ocr_text, meme.user_description, *(d.text for d in meme.descriptions), *meme.tags])


def group_view(core, group_id: int) -> dict:
    """A group with its members' memes and a suggested name."""
    group = TemplateStore(core.store).group(group_id)
    memes = core.store.get_memes([member["id"] for member in group["members"]])
    return group | {"memes": memes, "suggested": suggest_name([_member_text(m) for m in memes])}


def _tag_group(core, group_id: int, tags: list[str]) -> int:
    members = TemplateStore(core.store).members(group_id)
    for meme_id in members:
        core.store.add_tags(meme_id, tags)
    return len(members)


@router.get("/templates")
def templates_page(request: Request):
    groups = TemplateStore(core_of(request).store).groups()
    return render(request, "templates.html", {"groups": groups})


@router.get("/templates/{group_id}")
def template_page(request: Request, group_id: int):
    return render(request, "template.html", {"group": group_view(core_of(request), group_id)})


@router.post("/templates/{group_id}/name")
def name_form(request: Request, group_id: int, name: Annotated[str, Form(max_length=MAX_NAME)] = ""):
    TemplateStore(core_of(request).store).set_name(group_id, name)
    return RedirectResponse(f"/templates/{group_id}", status_code=303)


@router.post("/templates/{group_id}/tags")
def tag_form(request: Request, group_id: int, tag: Annotated[str, Form(max_length=64)] = ""):
    _tag_group(core_of(request), group_id, [tag])
    return RedirectResponse(f"/templates/{group_id}", status_code=303)


@router.get("/api/templates")
def api_groups(request: Request) -> dict:
    """Exactly the JSON of `memesearch templates --json`."""
    return {"groups": TemplateStore(core_of(request).store).groups()}


@router.get("/api/templates/{group_id}")
def api_group(request: Request, group_id: int) -> dict:
    view = group_view(core_of(request), group_id)
    return {key: view[key] for key in ("id", "name", "size", "members", "suggested")}


@router.patch("/api/templates/{group_id}")
def api_name(request: Request, group_id: int, body: GroupName) -> dict:
    store = TemplateStore(core_of(request).store)
    store.set_name(group_id, body.name)
    return {key: value for key, value in store.group(group_id).items()}


@router.post("/api/templates/{group_id}/tags")
def api_tag(request: Request, group_id: int, body: GroupTags) -> dict:
    return {"tagged": _tag_group(core_of(request), group_id, body.tags)}
