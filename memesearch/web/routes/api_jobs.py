"""JSON API: bulk runs (with live progress over SSE) and caption models."""

from __future__ import annotations

import asyncio
import json
from typing import Annotated

from fastapi import APIRouter, Query, Request
from fastapi.responses import StreamingResponse

from memesearch.web.api_schemas import DefaultModel, JobStart, Pull
from memesearch.web import jobs_bridge, models_info
from memesearch.web.deps import core_of

router = APIRouter(prefix="/api")
TERMINAL = {"done", "cancelled", "failed"}
SSE_INTERVAL_S = 0.5


@router.get("/jobs")
def list_jobs(request: Request, limit: Annotated[int, Query(ge=1, le=200)] = 20) -> dict:
    return {"runs": [run.as_dict() for run in core_of(request).jobs.list_runs(limit)]}


@router.post("/jobs")
def start_job(request: Request, body: JobStart) -> dict:
    """``{"kind": "describe", "model": id, "scope": "undescribed"}`` starts a bulk run;
    ``kind`` index/ocr/embed work on the whole library (or ``folder_id``)."""
    core = core_of(request)
    if body.kind == "describe":
        model = jobs_bridge.caption_model_id(core, body.model)
        meme_ids = body.meme_ids if body.meme_ids is not None else core.store.ids_without_description(model)
        return jobs_bridge.start(core, "describe", model=model, meme_ids=meme_ids)
    return jobs_bridge.start(core, body.kind, folder_id=body.folder_id)


@router.get("/jobs/estimate")
def estimate_job(request: Request, model: str | None = None) -> dict:
    """How many memes "describe all undescribed" would caption with ``model``, and about how long it takes."""
    from memesearch.web.estimates import describe_estimate

    core = core_of(request)
    return describe_estimate(core, jobs_bridge.caption_model_id(core, model))


@router.get("/jobs/{run_id}")
def get_job(request: Request, run_id: int) -> dict:
    return core_of(request).jobs.get(run_id).as_dict()


@router.post("/jobs/{run_id}/cancel")
def cancel_job(request: Request, run_id: int) -> dict:
    return core_of(request).jobs.cancel(run_id).as_dict()


@router.post("/jobs/{run_id}/retry")
def retry_job(request: Request, run_id: int) -> dict:
    return core_of(request).jobs.retry_failed(run_id).as_dict()


@router.get("/jobs/{run_id}/events")
async def job_events(request: Request, run_id: int) -> StreamingResponse:
    """Server-sent events: one ``progress`` event per change, then ``end`` when the run finishes."""
    jobs = core_of(request).jobs
    jobs.get(run_id)  # 404 before the stream starts

    async def events():
        last = None
        while True:
            run = (await asyncio.to_thread(jobs.get, run_id)).as_dict()
            payload = json.dumps(run)
            if payload != last:
                yield f"event: progress\ndata: {payload}\n\n"
                last = payload
            if run["state"] in TERMINAL:
                yield f"event: end\ndata: {payload}\n\n"
                return
            if await request.is_disconnected():
                return
            await asyncio.sleep(SSE_INTERVAL_S)

    return StreamingResponse(events(), media_type="text/event-stream", headers={"Cache-Control": "no-store"})


@router.get("/models")
def list_models(request: Request) -> dict:
    return {"default": core_of(request).settings.caption_model, "models": models_info.model_rows(core_of(request).settings)}


@router.post("/models/default")
def set_default(request: Request, body: DefaultModel) -> dict:
    from memesearch.web import preferences

    core = core_of(request)
    preferences.save_default_model(core.settings, jobs_bridge.caption_model_id(core, body.model))
    return {"default": core.settings.caption_model}


@router.post("/models/{model_id}/pull")
def pull(request: Request, model_id: str, body: Pull | None = None) -> dict:
    """Download a model's files in the background; an optional ``{"dtype": "int8"}`` picks the weights."""
    dtype = body.dtype if body is not None else None
    return models_info.start_pull(request.app.state.background, core_of(request).settings, model_id, dtype)


@router.post("/models/{model_id}/pull/cancel")
def cancel_pull(request: Request, model_id: str) -> dict:
    """Stop a running download; its partial files stay, so pulling again resumes."""
    return models_info.cancel_pull(request.app.state.background, core_of(request).settings, model_id)


@router.get("/models/{model_id}/pull")
def pull_status(request: Request, model_id: str) -> dict:
    return models_info.pull_status(request.app.state.background, core_of(request).settings, model_id)


@router.post("/models/check")
def start_check(request: Request) -> dict:
    return models_info.start_check(request.app.state.background, core_of(request).settings)


@router.get("/models/check")
def check_status(request: Request) -> dict:
    return models_info.check_status(request.app.state.background)
