"""Image bytes: thumbnails from the data dir, originals of registered memes only.

Files are addressed by meme id, never by a path from the request, and the
stored path must still resolve inside a registered folder or the data dir.
"""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse

from memesearch.errors import NotFoundError
from memesearch.library.thumbnails import ensure_thumbnail
from memesearch.web.deps import core_of
from memesearch.web.views import servable_path

router = APIRouter(prefix="/files")
_MEDIA = {"jpeg": "image/jpeg", "png": "image/png", "webp": "image/webp", "gif": "image/gif", "bmp": "image/bmp"}
_CACHE = {"Cache-Control": "private, max-age=86400"}


def _original(request: Request, meme_id: int):
    core = core_of(request)
    meme = core.store.get_meme(meme_id)
    path = servable_path(meme, core.store.list_folders(), core.settings.home, core.settings.uploads_dir)
    if path is None:
        raise NotFoundError(f"the file of meme {meme_id} is not available (missing, or outside the library folders)")
    return meme, path


@router.get("/{meme_id}/thumb")
async def thumbnail(request: Request, meme_id: int) -> FileResponse:
    core = core_of(request)
    meme, _ = _original(request, meme_id)
    path = await asyncio.to_thread(ensure_thumbnail, core.settings, meme)
    return FileResponse(path, media_type="image/webp", headers=_CACHE)


@router.get("/{meme_id}/image")
def image(request: Request, meme_id: int) -> FileResponse:
    meme, path = _original(request, meme_id)
    return FileResponse(path, media_type=_MEDIA.get(meme.format or "", "application/octet-stream"), headers=_CACHE)


@router.get("/{meme_id}/download")
def download(request: Request, meme_id: int) -> FileResponse:
    meme, path = _original(request, meme_id)
    return FileResponse(path, media_type=_MEDIA.get(meme.format or "", "application/octet-stream"), filename=path.name)
