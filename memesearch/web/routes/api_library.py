"""JSON API: uploads and folders."""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import Response
from starlette.datastructures import UploadFile

from memesearch.errors import InvalidInputError, NotFoundError
from memesearch.library.uploads import save_upload
from memesearch.web.api_schemas import UPLOAD, FolderAdd, FolderPatch
from memesearch.web import jobs_bridge
from memesearch.web.deps import core_of
from memesearch.web.errors import error_response

router = APIRouter(prefix="/api")


class UploadTooLargeError(InvalidInputError):
    status = 413


def uploads_folder(core):
    """The uploads folder, registered as a library folder on first use."""
    path = core.settings.uploads_dir
    path.mkdir(parents=True, exist_ok=True)
    return core.store.folder_by_path(str(path.resolve())) or core.store.add_folder(str(path.resolve()))


@router.post("/uploads", openapi_extra=UPLOAD)
async def upload(request: Request, index: bool = True) -> dict:
    """multipart/form-data with one or more ``files`` parts. Each file is checked on its own; the
    batch is indexed automatically (``index=false`` defers it to ``POST /api/uploads/index``).
    200 when at least one file was saved or linked to the meme that already has its bytes
    (refused ones carry their reason); 422 when none was."""
    core = core_of(request)
    settings = core.settings
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidInputError("send the files as multipart/form-data in a field named 'files'")
    per_file = int(settings.max_upload_mb * 1e6)
    # Refuse an oversized batch before receiving it (multipart overhead allowed for).
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > per_file * settings.max_upload_files + 1_000_000:
        raise UploadTooLargeError(
            f"the upload is {int(declared) / 1e6:.0f} MB; at most {settings.max_upload_files} files of "
            f"{settings.max_upload_mb:g} MB each are accepted")
    async with request.form(max_files=settings.max_upload_files + 1, max_part_size=per_file + 1) as form:
        files = [item for item in form.getlist("files") if isinstance(item, UploadFile)]
        if not files:
            raise InvalidInputError("no files in the request (field name: 'files')")
        if len(files) > settings.max_upload_files:
            raise InvalidInputError(f"at most {settings.max_upload_files} files per upload")
        results = []
        for item in files:
            data = await item.read(per_file + 1)
            # Only the first bytes past the limit are read: the real size comes from the upload itself.
            results.append(save_upload(settings, item.filename or "upload", data, size=item.size,
                                       existing=present_meme_with(core.store)).as_dict())
    if not any(r["ok"] for r in results):
        return _nothing_saved(request, results)
    folder = uploads_folder(core)
    saved = sum(1 for r in results if r["saved_as"])
    run = jobs_bridge.index_folder(core, folder.id) if index and saved else None
    return {"files": results, "saved": saved, "already": sum(1 for r in results if r["duplicate"]), "run": run}


def present_meme_with(store):
    """sha256 -> id of a present meme with those bytes (uploads of known bytes link to it)."""
    def find(sha256: str) -> int | None:
        return next((row["id"] for row in store.memes_with_sha(sha256) if row["status"] == "ok"), None)
    return find


def _nothing_saved(request: Request, results: list[dict]) -> Response:
    """Every file was refused (not an image, damaged, too large): a 422 problem with each file's reason
    (the same ``files`` list a successful upload answers)."""
    first = f"{results[0]['name']}: {results[0]['error']}"
    message = first if len(results) == 1 else f"none of the {len(results)} files could be saved ({first}; ...)"
    return error_response(request, 422, message, files=results, saved=0, already=0, run=None)


@router.post("/uploads/index")
def index_uploads(request: Request) -> dict:
    core = core_of(request)
    return {"run": jobs_bridge.index_folder(core, uploads_folder(core).id)}


def folder_dict(folder, counts: dict[int, int]) -> dict:
    return {"id": folder.id, "path": folder.path, "added_at": folder.added_at, "memes": counts.get(folder.id, 0),
            "auto_scan_minutes": folder.auto_scan_minutes, "last_scan_at": folder.last_scan_at,
            "last_scan": folder.last_scan}


def _folder(core, folder_id: int):
    found = next((f for f in core.store.list_folders() if f.id == folder_id), None)
    if found is None:
        raise NotFoundError(f"no folder with id {folder_id}")
    return found


@router.get("/folders")
def list_folders(request: Request) -> dict:
    store = core_of(request).store
    counts = store.folder_meme_counts()
    return {"folders": [folder_dict(f, counts) for f in store.list_folders()]}


@router.post("/folders")
def add_folder(request: Request, body: FolderAdd) -> dict:
    """``{"path": "/abs/folder", "auto_scan_minutes": 0, "scan": true}``: register and scan it."""
    from memesearch.library.folders import validate_folder

    path = body.path
    if not path.strip():
        raise InvalidInputError("path must be the folder's path")
    if not Path(path.strip()).expanduser().is_absolute():
        raise InvalidInputError(f"give an absolute path (starting with /), not {path!r}")
    core = core_of(request)
    resolved = validate_folder(Path(path.strip()), core.settings.home)
    if core.store.folder_by_path(str(resolved)) is not None:
        raise InvalidInputError(f"{resolved} is already a library folder")
    folder = core.store.add_folder(str(resolved))
    if "auto_scan_minutes" in body.model_fields_set:
        core.store.set_folder_auto_scan(folder.id, body.auto_scan_minutes)
    run = jobs_bridge.index_folder(core, folder.id) if body.scan else None
    return {"folder": folder_dict(_folder(core, folder.id), {}), "run": run}


@router.patch("/folders/{folder_id}")
def update_folder(request: Request, folder_id: int, body: FolderPatch) -> dict:
    core = core_of(request)
    _folder(core, folder_id)
    core.store.set_folder_auto_scan(folder_id, body.auto_scan_minutes)
    return {"folder": folder_dict(_folder(core, folder_id), core.store.folder_meme_counts())}


@router.delete("/folders/{folder_id}")
def remove_folder(request: Request, folder_id: int) -> dict:
    core = core_of(request)
    folder = _folder(core, folder_id)
    core.store.remove_folder(folder.id)
    return {"removed": folder.path}


@router.post("/folders/{folder_id}/rescan")
def rescan(request: Request, folder_id: int) -> dict:
    core = core_of(request)
    _folder(core, folder_id)
    return {"run": jobs_bridge.index_folder(core, folder_id)}
