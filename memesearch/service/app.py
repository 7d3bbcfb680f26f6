"""The ML service's HTTP API (FastAPI; OpenAPI at /openapi.json, docs at /docs).

With ``MEMESEARCH_ML_TOKEN`` set, every route but ``/healthz`` - the schema and docs
pages included - needs ``Authorization: Bearer <token>``.

Images travel as uploaded bytes, never as paths: the service reads no file a
client names, so it cannot be used to read the host's files. Errors are RFC 9457
problem details (memesearch/problems.py, docs/API.md): 422 unusable input
(``/problems/bad-image``: corrupt image; ``/problems/invalid-input``: too many texts),
404 unknown model, 413 body too large, 401 bad token, 503 + Retry-After when every
inference slot is busy (``/problems/busy``), 500 when a model fails
(``/problems/model-failed``; the service keeps serving).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hmac
import logging
import os
import resource
import time
from typing import Annotated

import numpy as np
from fastapi import Depends, FastAPI, File, Form, Header, HTTPException, Request, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from pydantic import AfterValidator, BaseModel, Field

from memesearch import __version__, problems
from memesearch.config import Settings
from memesearch.errors import InvalidInputError, MemeSearchError, NotFoundError
from memesearch.ml.base import CaptionRequest
from memesearch.service.images import decode_upload
from memesearch.service.limits import BodyLimitMiddleware, Busy, InferenceRunner
from memesearch.service.pool import OCR_ENGINE_NAME, ModelPool
from memesearch.unicode_input import Utf8UrlMiddleware, reject_surrogates

#: Form fields that hold numbers in the caption routes (an empty value is refused, not defaulted).
NUMBER_FORM_FIELDS = ("max_new_tokens",)

MAX_TEXTS = 256
MAX_TEXT_CHARS = 20_000
#: Images one /v1/caption-batch request may carry (the body size limit applies to them together).
MAX_CAPTION_IMAGES = 16


class ModelFailure(MemeSearchError):
    """A model raised while loading or running: 500 with the reason."""

    status = 500
    problem = "model-failed"


# Every error answer is a problem (RFC 9457, memesearch/problems.py): clients branch on its
# ``type`` (/problems/bad-image, /problems/busy, ...) and status, never on the wording.
ERROR_RESPONSES = problems.responses({
    401: "Missing or wrong token (/problems/unauthorized).", 404: "Unknown model or path (/problems/not-found).",
    405: "The path exists, but not with this method.",
    409: "The model is not downloaded on the service (/problems/model-not-ready).",
    413: "Request body too large (/problems/too-large).",
    422: "Unusable input: /problems/bad-image (not an image, corrupt, too large) or /problems/invalid-input "
         "(invalid fields, listed in `errors`).",
    500: "A model failed (/problems/model-failed); the service keeps serving.",
    503: "Every inference slot is busy (/problems/busy, Retry-After) or the model cannot load (/problems/model-unavailable).",
})


# Text that UTF-8 cannot encode (lone surrogates from JSON escapes) is a 422, not a tokenizer crash.
CleanStr = Annotated[str, AfterValidator(reject_surrogates)]


class EmbedBody(BaseModel):
    texts: list[CleanStr] = Field(max_length=MAX_TEXTS, description="Texts to embed (at most 256).")
    model: CleanStr | None = Field(default=None, description="Embedder name; default: the service's embed_model.")
    mode: str = Field(default="passage", pattern="^(passage|query)$", description="query: search-query prefixing.")


class Caption(BaseModel):
    text: str
    token_ids: list[int] = Field(description="The generated token ids (empty for backends that have none).")
    backend: str = Field(description="The backend that ran: onnx, torch, api, fake.")
    dtype: str = Field(description="Its weight type, e.g. int8 or fp32.")
    model_id: str
    revision: str = ""
    ms: float = Field(description="Model milliseconds per image (a batch's time shared among its images).")


class CaptionOutcome(BaseModel):
    """One image of a batch: its caption, or the problem (RFC 9457) that image alone had."""

    caption: Caption | None = None
    problem: problems.ProblemDetails | None = None


class CaptionBatch(BaseModel):
    model_id: str
    results: list[CaptionOutcome] = Field(description="One per uploaded image, in upload order.")


def create_app(settings: Settings) -> FastAPI:
    pool = ModelPool(settings, ttl_s=settings.ml_model_ttl_s)
    runner = InferenceRunner(settings.ml_max_concurrency)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        if settings.ml_preload:
            await asyncio.get_running_loop().run_in_executor(None, pool.preload, settings.ml_preload)
        sweeper = asyncio.create_task(_sweep_forever(pool))
        yield
        sweeper.cancel()
        runner.shutdown()

    # With a token, the schema and docs pages are served only to holders of it (routes below).
    public_docs = not settings.ml_token
    app = FastAPI(title="memesearch ML service", version=__version__, lifespan=lifespan,
                  description="OCR, image descriptions, text embeddings and image embeddings (visual search) for memesearch.",
                  responses=ERROR_RESPONSES, openapi_url="/openapi.json" if public_docs else None,
                  docs_url="/docs" if public_docs else None, redoc_url="/redoc" if public_docs else None)
    app.state.pool = pool
    app.state.runner = runner
    app.add_middleware(BodyLimitMiddleware, max_bytes=int(settings.ml_max_upload_mb * 1e6))
    app.add_middleware(Utf8UrlMiddleware)

    def check_token(authorization: Annotated[str | None, Header()] = None) -> None:
        """Only ``Authorization: Bearer <token>``: a bare token or another scheme is refused."""
        if not settings.ml_token:
            return
        scheme, _, supplied = (authorization or "").partition(" ")
        right = hmac.compare_digest(supplied.strip().encode(), settings.ml_token.encode())
        if scheme.lower() != "bearer" or not right:
            raise HTTPException(401, "missing or wrong token (Authorization: Bearer $MEMESEARCH_ML_TOKEN)",
                                headers={"WWW-Authenticate": "Bearer"})

    @app.exception_handler(MemeSearchError)
    async def _memesearch_error(request: Request, exc: MemeSearchError) -> JSONResponse:
        status = 500 if exc.status >= 500 else exc.status
        return problems.error_response(exc, instance=request.url.path, status=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        # FastAPI answers a body it cannot decode (not UTF-8, not JSON) with a bare 400; it is unusable input.
        if exc.status_code == 400:
            return problems.problem_response(422, "the request body is not valid JSON in UTF-8", instance=request.url.path)
        detail = problems.http_detail(exc.status_code, exc.detail, request.method, request.url.path)
        return problems.problem_response(exc.status_code, detail, instance=request.url.path, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        # Where and why each field is wrong, never the input itself (FastAPI's default echoes it back,
        # and text that is not valid Unicode cannot be encoded as JSON).
        fields = problems.validation_errors(list(exc.errors()))
        return problems.problem_response(422, problems.validation_sentence(fields), instance=request.url.path,
                                         errors=fields)

    @app.exception_handler(Busy)
    async def _busy(request: Request, exc: Busy) -> JSONResponse:
        return problems.problem_response(503, f"all {runner.max_concurrency} inference slots are busy; retry shortly",
                                         slug="busy", instance=request.url.path, headers={"Retry-After": "1"})

    @app.exception_handler(Exception)
    async def _bug(request: Request, exc: Exception) -> JSONResponse:
        logging.getLogger(__name__).exception("unhandled error on %s %s", request.method, request.url.path)
        return problems.problem_response(500, "an unexpected error happened; the details are in the service log",
                                         instance=request.url.path)

    async def read_image(upload: UploadFile) -> bytes:
        return await upload.read()

    guarded = [Depends(check_token)]

    async def no_blank_numbers(request: Request) -> None:
        """FastAPI reads an empty form field as "not given", so ``max_new_tokens=`` would pass as
        the default; a number field sent empty is a client mistake and is said so (422).

        Not expressible as a Form() constraint or validator: FastAPI drops empty form strings while
        extracting the body, before pydantic runs (fastapi.dependencies.utils._get_multidict_value,
        for plain Form fields and form models alike), so no validator ever sees the empty value."""
        form = await request.form()  # parsed once: Starlette caches it for the route's own fields
        for name in NUMBER_FORM_FIELDS:
            value = form.get(name)
            if isinstance(value, str) and not value.strip():
                raise InvalidInputError(f"{name} is empty", hint="leave it out, or send a whole number")

    captioning = [*guarded, Depends(no_blank_numbers)]

    if not public_docs:
        @app.get("/openapi.json", dependencies=guarded, include_in_schema=False)
        def openapi() -> JSONResponse:
            return JSONResponse(app.openapi())

        @app.get("/docs", dependencies=guarded, include_in_schema=False)
        def docs() -> HTMLResponse:
            return get_swagger_ui_html(openapi_url="/openapi.json", title=f"{app.title} - docs")

        @app.get("/redoc", dependencies=guarded, include_in_schema=False)
        def redoc() -> HTMLResponse:
            return get_redoc_html(openapi_url="/openapi.json", title=f"{app.title} - ReDoc")

    @app.get("/healthz", summary="Liveness: always 200 while the process serves requests.")
    def healthz() -> dict:
        return {"ok": True, "version": __version__, "in_flight": runner.in_flight}

    @app.get("/v1/models", dependencies=guarded, summary="Loaded models, limits and memory.")
    def models() -> dict:
        return {"loaded": pool.loaded(), "ttl_s": pool.ttl_s, "max_concurrency": runner.max_concurrency,
                "in_flight": runner.in_flight, "rejected": runner.rejected, "memory": _memory(),
                "default_embed_model": settings.embed_model, "default_caption_model": settings.caption_model,
                "default_visual_model": settings.visual_model,
                "ocr_engines": [OCR_ENGINE_NAME]}

    @app.post("/v1/embed", dependencies=guarded, summary="Embed texts; vectors are base64 little-endian float32.")
    async def embed(body: EmbedBody) -> dict:
        if any(len(text) > MAX_TEXT_CHARS for text in body.texts):
            raise InvalidInputError(f"a text is longer than {MAX_TEXT_CHARS} characters")
        name = body.model or settings.embed_model
        vectors, model_id = await runner.run(_guard(_embed), pool, name, body.texts, body.mode)
        return {"model_id": model_id, "dim": int(vectors.shape[1]), "count": int(vectors.shape[0]),
                "vectors": base64.b64encode(vectors.astype("<f4").tobytes()).decode()}

    @app.post("/v1/embed-image", dependencies=guarded,
              summary="Embed an uploaded image with the visual search model; same answer shape as /v1/embed.")
    async def embed_image(
        image: Annotated[UploadFile, File(description="Image bytes (JPEG, PNG, WebP, GIF, BMP); never a path.")],
        model: Annotated[str | None, Form(description="Image-text model id (models.yml); default: visual_model.")] = None,
    ) -> dict:
        data = await read_image(image)
        name = model or settings.visual_model
        vectors, model_id = await runner.run(_guard(_embed_image), pool, settings, data, name)
        return {"model_id": model_id, "dim": int(vectors.shape[1]), "count": int(vectors.shape[0]),
                "vectors": base64.b64encode(vectors.astype("<f4").tobytes()).decode()}

    @app.post("/v1/ocr", dependencies=guarded, summary="Read the text of an uploaded image.")
    async def ocr(image: Annotated[UploadFile, File(description="Image bytes (JPEG, PNG, WebP, GIF, BMP).")]) -> dict:
        data = await read_image(image)
        return await runner.run(_guard(_ocr), pool, settings, data)

    @app.post("/v1/caption", dependencies=captioning, summary="Describe an uploaded image with a caption model.")
    async def caption(
        image: Annotated[UploadFile, File(description="Image bytes (JPEG, PNG, WebP, GIF, BMP).")],
        model: Annotated[str | None, Form(description="Caption model id (models.yml); default: caption_model.")] = None,
        prompt: Annotated[str | None, Form(max_length=2000, description="Override the model's prompt.")] = None,
        max_new_tokens: Annotated[int | None, Form(ge=1, le=1024)] = None,
    ) -> dict:
        data = await read_image(image)
        return await runner.run(_guard(_caption), pool, settings, data, model or settings.caption_model,
                                prompt, max_new_tokens)

    @app.post("/v1/caption-batch", dependencies=captioning, response_model_exclude_none=True,
              summary="Describe several uploaded images in as few model calls as the model allows.")
    async def caption_batch(
        images: Annotated[list[UploadFile], File(min_length=1, max_length=MAX_CAPTION_IMAGES,
                                                 description="Image bytes (JPEG, PNG, WebP, GIF, BMP); never paths.")],
        model: Annotated[str | None, Form(description="Caption model id (models.yml); default: caption_model.")] = None,
        prompt: Annotated[str | None, Form(max_length=2000, description="Override the model's prompt.")] = None,
        max_new_tokens: Annotated[int | None, Form(ge=1, le=1024)] = None,
    ) -> CaptionBatch:
        uploads = [await read_image(image) for image in images]
        return await runner.run(_guard(_caption_many), pool, settings, uploads, model or settings.caption_model,
                                prompt, max_new_tokens)

    return app


def _guard(func):
    """Client mistakes keep their 4xx; anything else a model does wrong becomes a 500 with its reason."""

    def guarded(*args):
        try:
            return func(*args)
        except (InvalidInputError, NotFoundError):
            raise
        except Exception as exc:
            from memesearch.ml.failures import failure_reason

            raise ModelFailure(f"model failed: {failure_reason(exc)}") from exc

    return guarded


def _image_text_name(settings: Settings, name: str) -> str:
    """``name`` if it is an image-text model the registry knows, else a 404 saying so."""
    from memesearch.service.pool import is_image_text_model

    if name.strip().lower() in ("", "none", "off"):
        raise NotFoundError("visual search is turned off in this service (MEMESEARCH_VISUAL_MODEL)")
    if not is_image_text_model(name, settings.home):
        raise NotFoundError(f"{name!r} is not an image-text embedding model", hint="e.g. clip-vit-b-32")
    return name


def _embed_image(pool: ModelPool, settings: Settings, data: bytes, name: str) -> tuple[np.ndarray, str]:
    name = _image_text_name(settings, name)
    image = decode_upload(data, settings.max_megapixels)
    with pool.use("image_text", name) as embedder:
        return embedder.embed_images([image]), embedder.model_id


def _embed(pool: ModelPool, name: str, texts: list[str], mode: str) -> tuple[np.ndarray, str]:
    from memesearch.ml.factory import TEXT_EMBEDDERS
    from memesearch.service.pool import is_image_text_model

    if name not in TEXT_EMBEDDERS and is_image_text_model(name, pool.settings.home):
        # Text queries of visual search: the image-text model's text tower (same space as its images).
        with pool.use("image_text", name) as embedder:
            vectors = embedder.embed_texts(texts) if texts else np.zeros((0, embedder.dim), dtype=np.float32)
            return vectors, embedder.model_id
    with pool.use("embed", name) as embedder:
        if mode == "query":
            vectors = embedder.embed_queries(texts) if texts else np.zeros((0, embedder.dim), dtype=np.float32)
        else:
            vectors = embedder.embed(texts)
        return vectors, embedder.model_id


def _ocr(pool: ModelPool, settings: Settings, data: bytes) -> dict:
    image = decode_upload(data, settings.max_megapixels)
    with pool.use("ocr", OCR_ENGINE_NAME) as engine:
        result = engine.read(image)
        return {"text": result.text, "lines": [[t, c] for t, c in result.lines], "engine_id": engine.engine_id,
                "ms": result.ms}


def _caption(pool: ModelPool, settings: Settings, data: bytes, model: str, prompt: str | None,
             max_new_tokens: int | None) -> dict:
    image = decode_upload(data, settings.max_megapixels)
    with pool.use("caption", model) as chain:
        request = CaptionRequest(image=image, prompt=prompt or chain.spec.effective_prompt(),
                                 max_new_tokens=max_new_tokens or chain.spec.max_new_tokens)
        result = chain.caption([request])[0]
        return {"text": result.text, "token_ids": list(result.token_ids), "backend": result.backend,
                "dtype": result.dtype, "model_id": chain.spec.id, "revision": getattr(result, "revision", ""),
                "ms": result.ms}


class _Prompted:
    """The chain with one request's prompt and length, as caption_batches calls it."""

    def __init__(self, chain, prompt: str | None, max_new_tokens: int | None) -> None:
        self.chain = chain
        self.prompt = prompt or chain.spec.effective_prompt()
        self.max_new_tokens = max_new_tokens or chain.spec.max_new_tokens

    def caption_images(self, images: list) -> list:
        return self.chain.caption([CaptionRequest(image=image, prompt=self.prompt, max_new_tokens=self.max_new_tokens)
                                   for image in images])


def _caption_many(pool: ModelPool, settings: Settings, uploads: list[bytes], model: str, prompt: str | None,
                  max_new_tokens: int | None) -> CaptionBatch:
    """Chunks of the model's safe size (memesearch.ml.caption_batches: 1 for quantised weights, times its streams),
    decoded one batch at a time so at most that many images are held; an image that does not
    decode or that the model fails on gets its own problem and the others their captions."""
    from memesearch.ml.caption_batches import batch_size_of, caption_each

    outcomes: list[CaptionOutcome] = []
    unusable: list[MemeSearchError] = []  # images that did not decode
    with pool.use("caption", model) as chain:
        prompted = _Prompted(chain, prompt, max_new_tokens)
        while len(outcomes) < len(uploads):
            chunk = uploads[len(outcomes):len(outcomes) + batch_size_of(chain)]
            decoded: list = []
            for data in chunk:
                try:
                    decoded.append(decode_upload(data, settings.max_megapixels))
                except MemeSearchError as exc:
                    decoded.append(exc)
            images = [item for item in decoded if not isinstance(item, Exception)]
            results = iter(caption_each(prompted, images))
            for item in decoded:
                result = item if isinstance(item, Exception) else next(results)
                outcomes.append(_outcome(result, chain.spec.id))
                if isinstance(item, Exception):
                    unusable.append(item)
        if len(unusable) == len(uploads):
            # Not one image to describe: the request itself is unusable, as for /v1/caption.
            raise unusable[0]
        return CaptionBatch(model_id=chain.spec.id, results=outcomes)


def _outcome(result, model_id: str) -> CaptionOutcome:
    if isinstance(result, MemeSearchError):
        error = result if isinstance(result, (InvalidInputError, NotFoundError)) else ModelFailure(
            f"model failed: {result.message}")
        return CaptionOutcome(problem=problems.ProblemDetails(**problems.problem_body(
            error.status, error.message, slug=problems.slug_for_error(error),
            **problems.error_extensions(error.hint, None, None))))
    return CaptionOutcome(caption=Caption(text=result.text, token_ids=list(result.token_ids), backend=result.backend,
                                          dtype=result.dtype, model_id=model_id,
                                          revision=getattr(result, "revision", ""), ms=result.ms))


def _memory() -> dict:
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    try:
        with open("/proc/self/statm") as statm:
            rss_mb = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    except OSError:
        rss_mb = None
    return {"rss_mb": None if rss_mb is None else round(rss_mb, 1), "peak_rss_mb": round(peak_mb, 1)}


async def _sweep_forever(pool: ModelPool) -> None:
    interval = 30.0 if pool.ttl_s <= 0 else max(1.0, min(pool.ttl_s / 4, 30.0))
    while True:
        await asyncio.sleep(interval)
        pool.sweep(time.time())
