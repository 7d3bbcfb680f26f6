"""JSON API: search, one meme, edits (description, tags), similar and duplicate memes, tags."""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Query, Request

from memesearch.search.engine import MAX_LIMIT, MAX_OFFSET, MAX_QUERY_CHARS
from memesearch.search.query import MAX_FILTERS
from memesearch.web import jobs_bridge
from memesearch.web.api_schemas import Describe, MemePatch
from memesearch.web.deps import core_of
from memesearch.web.views import filters_to_query, meme_dict, near_duplicates

router = APIRouter(prefix="/api")



def run_search(core, q: str, mode: str, limit: int, offset: int = 0, tags=(), folders=(), described=None,
               siblings: bool = False):
    query = filters_to_query(q, list(tags), list(folders), described)
    return core.search_engine.search(query, mode=mode, limit=limit, offset=offset, siblings=siblings)


@router.get("/search")
def api_search(
    request: Request,
    q: Annotated[str, Query(max_length=MAX_QUERY_CHARS)] = "",
    mode: Literal["hybrid", "keyword", "vector"] = "hybrid",
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 10,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
    # Half the engine's filter budget each, so any schema-valid request is accepted.
    tag: Annotated[list[str], Query(max_length=MAX_FILTERS // 2)] = [],  # noqa: B006 - FastAPI copies defaults
    folder: Annotated[list[str], Query(max_length=MAX_FILTERS // 2)] = [],  # noqa: B006
    described: str | None = None,
    siblings: bool = False,
) -> dict:
    """Exactly the JSON of `memesearch search --json` (``siblings``: `--siblings`)."""
    result = run_search(core_of(request), q, mode, limit, offset, tag, folder, described, siblings)
    return result.as_dict()


def _folder_of(core, meme):
    return next((f for f in core.store.list_folders() if f.id == meme.folder_id), None)


@router.get("/memes/{meme_id}")
def get_meme(request: Request, meme_id: int) -> dict:
    core = core_of(request)
    meme = core.store.get_meme(meme_id)
    return meme_dict(meme, _folder_of(core, meme))


@router.patch("/memes/{meme_id}")
def patch_meme(request: Request, meme_id: int, body: MemePatch) -> dict:
    """Change the user's description and/or tags: ``{"user_description": str, "tags": [..]}``
    (tags replace the set) or ``add_tags`` / ``remove_tags``."""
    core = core_of(request)
    store = core.store
    meme = store.get_meme(meme_id)
    text = body.user_description if body.user_description is not None else body.description
    if text is not None:
        store.set_user_description(meme_id, text.strip())
    if body.tags is not None:
        store.remove_tags(meme_id, [t for t in meme.tags if t not in body.tags])
        store.add_tags(meme_id, body.tags)
    if body.add_tags is not None:
        store.add_tags(meme_id, body.add_tags)
    if body.remove_tags is not None:
        store.remove_tags(meme_id, body.remove_tags)
    jobs_bridge.refresh_embeddings(core)
    return get_meme(request, meme_id)


@router.get("/memes/{meme_id}/similar")
def similar(request: Request, meme_id: int, limit: Annotated[int, Query(ge=1, le=100)] = 12) -> dict:
    core = core_of(request)
    core.store.get_meme(meme_id)
    pairs = core.search_engine.similar(meme_id, limit)
    memes = {m.id: m for m in core.store.get_memes([i for i, _ in pairs])}
    return {"id": meme_id, "similar": [{"id": i, "score": round(s, 6), "path": memes[i].path} for i, s in pairs if i in memes]}


@router.get("/memes/{meme_id}/duplicates")
def duplicates(request: Request, meme_id: int) -> dict:
    core = core_of(request)
    meme = core.store.get_meme(meme_id)
    exact = [row["id"] for row in core.store.memes_with_sha(meme.sha256)] if meme.sha256 else []
    near = near_duplicates(core.store, meme)
    return {
        "id": meme_id,
        "exact": [i for i in exact if i != meme_id],
        "near": [{"id": i, "distance": d} for i, d in near if i not in exact],
    }


@router.post("/memes/{meme_id}/describe")
def regenerate(request: Request, meme_id: int, body: Describe) -> dict:
    """Generate a description for one meme with ``{"model": id}`` (default model if absent), as a job."""
    core = core_of(request)
    core.store.get_meme(meme_id)
    model = jobs_bridge.caption_model_id(core, body.model)
    return jobs_bridge.start(core, "describe", model=model, meme_ids=[meme_id])


@router.get("/tags")
def tags(request: Request, prefix: str = "", limit: Annotated[int, Query(ge=1, le=500)] = 50,
         unused: bool = False) -> dict:
    """Tags in use with their counts and colours, filtered by prefix (autocomplete); ``unused=true``
    also lists tags no meme carries (the Tags page's /api/tag-details has every tag)."""
    wanted = prefix.strip().lower()
    found = [{"name": t.name, "count": t.count, "color": t.color}
             for t in core_of(request).store.list_tag_details(used_only=not unused) if t.name.lower().startswith(wanted)]
    return {"tags": found[:limit]}
