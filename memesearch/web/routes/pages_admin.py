"""Pages that manage the library: folders and models (with bulk runs)."""

from __future__ import annotations

from fastapi import APIRouter, Request

from memesearch.web import models_info
from memesearch.web.deps import core_of, render
from memesearch.web.routes.api_library import folder_dict

router = APIRouter()


def _runs(core, limit: int = 10) -> list[dict]:
    return [run.as_dict() for run in core.jobs.list_runs(limit)]


@router.get("/folders")
def folders_page(request: Request, part: str = ""):
    core = core_of(request)
    counts = core.store.folder_meme_counts()
    folders = [folder_dict(f, counts) for f in core.store.list_folders()]
    context = {"folders": folders, "uploads_dir": str(core.settings.uploads_dir), "runs": _runs(core, 5)}
    return render(request, "_folders.html" if part == "list" else "folders.html", context)


@router.get("/models")
def models_page(request: Request, part: str = ""):
    core = core_of(request)
    counts = core.store.counts()
    context_runs = _runs(core)
    context = {
        "models": models_info.model_rows(core.settings), "default_model": core.settings.caption_model,
        "runs": context_runs, "counts": counts,
        "undescribed": len(core.store.ids_without_description(core.settings.caption_model)),
        "check": models_info.check_status(request.app.state.background),
        # A describe run still going: the progress panel is rendered with it, so it survives a reload.
        "bulk": next((r for r in context_runs if r["kind"] == "describe" and r["state"] in ("queued", "running")), None),
        "pulls": models_info.pull_states(request.app.state.background),
    }
    template = {"runs": "_runs.html", "check": "_check.html"}.get(part, "models.html")
    return render(request, template, context)
