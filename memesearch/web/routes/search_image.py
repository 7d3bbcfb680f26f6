"""Search by image over HTTP: the JSON API and the search page's result list.

The picture comes as a multipart upload in a field named ``image``, capped like uploads
(``max_upload_mb``). Searching decodes, OCRs and matches it, which is CPU work, so it
runs in the thread pool and never blocks the event loop.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Request
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile

from memesearch.errors import InvalidInputError
from memesearch.search.by_image import search_by_image
from memesearch.search.engine import MAX_LIMIT, MAX_OFFSET
from memesearch.web.deps import core_of, render
from memesearch.web.views import hit_text

router = APIRouter()
FIELD = "image"
#: Hits the search page shows for one picture (no paging: matches are few by design).
PAGE_HITS = 48
#: Words for each kind of match, shown on the page's hits.
KIND_LABELS = {"exact": "this file", "duplicate": "same meme", "template": "same template", "similar": "looks similar"}

SEARCH_IMAGE = {"requestBody": {"required": True, "content": {"multipart/form-data": {"schema": {
    "type": "object", "required": [FIELD],
    "properties": {FIELD: {"type": "string", "format": "binary",
                           "description": "The picture to search by (JPEG, PNG, WebP, GIF, BMP), e.g. a screenshot."}},
}}}}}


class ImageTooLargeError(InvalidInputError):
    status = 413


async def _uploaded_image(request: Request) -> tuple[bytes, str]:
    """The bytes and file name of the ``image`` part; a missing, empty or oversized one is a clear 4xx."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidInputError(f"send the picture as multipart/form-data in a field named '{FIELD}'")
    limit_mb = core_of(request).settings.max_upload_mb
    cap = int(limit_mb * 1e6)
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > cap + 1_000_000:  # refused before it is received
        raise ImageTooLargeError(f"the picture is {int(declared) / 1e6:.0f} MB; at most {limit_mb:g} MB is accepted")
    async with request.form(max_files=2, max_fields=20) as form:
        item = form.get(FIELD)
        if isinstance(item, str):
            raise InvalidInputError(f"the '{FIELD}' field must be a file (the picture's bytes), not text")
        if not isinstance(item, UploadFile):
            raise InvalidInputError(f"no picture in the request (field name: '{FIELD}')")
        data = await item.read(cap + 1)  # one byte past the cap tells an oversized file
        name = item.filename or "the picture"
    if len(data) > cap:
        raise ImageTooLargeError(f"{name} is over the {limit_mb:g} MB limit for a search picture")
    return data, name


@router.post("/api/search/image", openapi_extra=SEARCH_IMAGE)
async def api_search_image(
    request: Request,
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT)] = 10,
    offset: Annotated[int, Query(ge=0, le=MAX_OFFSET)] = 0,
) -> dict:
    """Memes matching a picture: the same JSON as `GET /api/search` and `memesearch search --image FILE --json`
    (``mode`` is ``"image"``, ``query`` the file name). The meme the picture is a copy, resize or
    crop of comes first, then memes of its template; an unrelated picture finds nothing."""
    data, name = await _uploaded_image(request)
    result = await run_in_threadpool(search_by_image, core_of(request), data, name=name, limit=limit, offset=offset)
    return result.as_dict()


@router.post("/search/image", include_in_schema=False)
async def search_image_results(request: Request):
    """The search page's result list for a picture (the page posts it with the CSRF header)."""
    data, name = await _uploaded_image(request)
    result = await run_in_threadpool(search_by_image, core_of(request), data, name=name, limit=PAGE_HITS)
    hits = [{"hit": hit, "snippet": hit_text(hit), "badge": KIND_LABELS[result.kinds[hit.id]],
             "kind": result.kinds[hit.id]} for hit in result.hits]
    return render(request, "_image_results.html", {"hits": hits, "name": name, "total": result.total,
                                                   "ms": result.ms, "more": False})
