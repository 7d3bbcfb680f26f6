"""The ``remote`` backend: Embedder, OcrEngine and Captioner served by `memesearch ml serve`.

Several service URLs may be configured. Each call goes to the healthy ones first
(in configured order); a URL that refuses connections, times out or answers
502/503/504 is marked down for a while and the next one is tried (failover).
When every URL failed that way the whole pass is retried with exponential
backoff, then ServiceUnavailableError is raised: a *transient* error the jobs
layer waits out. Client mistakes (4xx) are raised at once, mapped onto the
memesearch error family, so a corrupt image fails exactly as it would in-process.
"""

from __future__ import annotations

import base64
import io
import logging
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
import numpy as np
from PIL import Image

from memesearch.config import Settings
from memesearch import problems
from memesearch.errors import (ConfigError, ImageError, InvalidInputError, ModelNotReadyError, ModelUnavailableError,
                               NotFoundError)
from memesearch.ml.base import CaptionRequest, Captioner, Embedder, OcrEngine, OcrResult
from memesearch.ml.chain import ChainCaptionResult

log = logging.getLogger(__name__)

_UNAVAILABLE_STATUSES = {502, 503, 504}


class ServiceUnavailableError(ModelUnavailableError):
    """No ML service URL answered (down, overloaded or timed out). Transient: retry later."""


class RemoteModelError(ModelUnavailableError):
    """The service answered 500: the model failed on this input (the service keeps running)."""


class ServiceClient:
    """HTTP to a list of service URLs with health tracking, failover and backoff."""

    def __init__(self, urls: Sequence[str], *, token: str = "", timeout_s: float = 120.0, retries: int = 2,
                 backoff_s: float = 0.5, down_for_s: float = 10.0) -> None:
        if not urls:
            raise ConfigError("no ML service URL configured", hint="set MEMESEARCH_ML_URLS=http://host:8765")
        self.urls = [url.rstrip("/") for url in urls]
        self.timeout_s = timeout_s
        self.retries = retries
        self.backoff_s = backoff_s
        self.down_for_s = down_for_s
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        self._http = httpx.Client(headers=headers, timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 5.0)))
        self._down_until: dict[str, float] = {}
        self._last_error: dict[str, str] = {}
        self._lock = threading.Lock()

    # -- health ---------------------------------------------------------------------
    def _ordered(self) -> list[str]:
        """Healthy URLs in configured order, then those marked down (soonest back first)."""
        now = time.monotonic()
        with self._lock:
            healthy = [u for u in self.urls if self._down_until.get(u, 0) <= now]
            down = sorted((u for u in self.urls if u not in healthy), key=lambda u: self._down_until[u])
        return healthy + down

    def _mark_down(self, url: str, reason: str, seconds: float | None = None) -> None:
        with self._lock:
            self._down_until[url] = time.monotonic() + (self.down_for_s if seconds is None else seconds)
            self._last_error[url] = reason
        log.warning("ML service %s unavailable: %s", url, reason)

    def _mark_up(self, url: str) -> None:
        if url in self._down_until:
            with self._lock:
                self._down_until.pop(url, None)

    def health(self) -> dict[str, dict]:
        """GET /healthz on every URL: {url: {"ok": bool, "detail": ...}}; updates the down marks."""
        report = {}
        for url in self.urls:
            try:
                response = self._http.get(f"{url}/healthz", timeout=5.0)
                ok = response.status_code == 200
                report[url] = {"ok": ok, "detail": response.json() if ok else f"HTTP {response.status_code}"}
            except (httpx.HTTPError, ValueError) as exc:
                ok, report[url] = False, {"ok": False, "detail": f"{exc.__class__.__name__}: {exc}"}
            if ok:
                self._mark_up(url)
            else:
                self._mark_down(url, str(report[url]["detail"]))
        return report

    # -- requests -------------------------------------------------------------------
    def request(self, method: str, path: str, **kwargs) -> dict:
        """The JSON answer of the first URL that serves the request."""
        for attempt in range(self.retries + 1):
            model_failure: str | None = None
            retry_after = 0.0
            for url in self._ordered():
                try:
                    response = self._http.request(method, f"{url}{path}", **kwargs)
                except httpx.TransportError as exc:  # refused, reset, DNS, timeouts
                    self._mark_down(url, f"{exc.__class__.__name__}: {exc}")
                    continue
                if response.status_code in _UNAVAILABLE_STATUSES:
                    wait = _retry_after(response)
                    retry_after = max(retry_after, wait)
                    self._mark_down(url, f"HTTP {response.status_code}: {_detail(response)}", seconds=wait or None)
                    continue
                if response.status_code >= 500:
                    model_failure = f"{url}: {_detail(response)}"
                    continue  # another machine may have a working model
                self._mark_up(url)
                if response.status_code >= 400:
                    raise _client_error(response)
                return response.json()
            if model_failure is not None:
                raise RemoteModelError(f"the ML service failed: {model_failure}")
            if attempt < self.retries:
                time.sleep(min(max(self.backoff_s * 2**attempt, retry_after), 30.0))
        reasons = "; ".join(f"{url}: {self._last_error.get(url, '?')}" for url in self.urls)
        raise ServiceUnavailableError(
            f"no ML service answered ({reasons})",
            hint="start it with `memesearch ml serve` or fix MEMESEARCH_ML_URLS; queued work resumes when it is back",
        )

    def close(self) -> None:
        self._http.close()


def _retry_after(response: httpx.Response) -> float:
    try:
        return min(float(response.headers.get("retry-after", "0")), 60.0)
    except ValueError:
        return 0.0


def _problem(response: httpx.Response) -> dict:
    """The service's problem details (RFC 9457); a body that is not one (a proxy's error page)
    becomes ``{"detail": its text}``."""
    try:
        body = response.json()
    except ValueError:
        return {"detail": response.text[:300]}
    return body if isinstance(body, dict) else {"detail": str(body)}


def _detail(response: httpx.Response) -> str:
    problem = _problem(response)
    return str(problem.get("detail") or f"HTTP {response.status_code}")


def _client_error(response: httpx.Response) -> Exception:
    """A 4xx answer as the matching memesearch error: by the problem ``type``, else by status;
    the wording of ``detail`` is passed on, never interpreted."""
    problem = _problem(response)
    detail = _detail(response)
    hint = problem.get("hint") if isinstance(problem.get("hint"), str) else None
    slug = problems.slug_of(problem.get("type"))
    status = response.status_code
    if slug == "bad-image":
        return ImageError(detail, hint=hint)
    if slug == "model-not-ready" or status == 409:
        return ModelNotReadyError(detail, hint=hint)
    if status in (401, 403):
        return ConfigError(f"the ML service refused the token: {detail}", hint="set the same MEMESEARCH_ML_TOKEN on both sides")
    if slug == "not-found" or status == 404:
        return NotFoundError(detail, hint=hint)
    if slug == "invalid-input" or status == 422:
        return InvalidInputError(detail, hint=hint)
    return InvalidInputError(f"the ML service rejected the request (HTTP {status}): {detail}", hint=hint)


def _item_error(problem: dict) -> Exception:
    """The problem of one image of a batch answer, as the error a request with that image alone raises."""
    status = int(problem.get("status") or 500)
    detail = str(problem.get("detail") or f"HTTP {status}")
    if status >= 500:
        return RemoteModelError(f"the ML service failed: {detail}")
    return _client_error(httpx.Response(status, json=problem))


def encode_image(image: Image.Image) -> bytes:
    """Lossless PNG (fast setting): the service decodes exactly the pixels we hold."""
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, format="PNG", compress_level=1)
    return buffer.getvalue()


def decode_vectors(payload: dict) -> np.ndarray:
    raw = base64.b64decode(payload["vectors"])
    return np.frombuffer(raw, dtype="<f4").reshape(payload["count"], payload["dim"]).copy()


# -- the model interfaces ------------------------------------------------------------
class RemoteEmbedder(Embedder):
    batch_size = 64

    def __init__(self, client: ServiceClient, name: str) -> None:
        super().__init__()
        self.client = client
        self.model_id = name  # the service builds the same embedder by name, so vectors match
        self.dim = 0  # learnt from the first answer

    def _post(self, texts: list[str], mode: str) -> np.ndarray:
        payload = self.client.request("POST", "/v1/embed", json={"texts": texts, "model": self.model_id, "mode": mode})
        if payload["model_id"] != self.model_id:
            raise ConfigError(f"the ML service embedded with {payload['model_id']!r}, not {self.model_id!r}")
        self.dim = payload["dim"]
        return decode_vectors(payload)

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        return self._post(texts, "passage")

    def embed_queries(self, texts: Sequence[str]) -> np.ndarray:
        self.ensure_loaded()
        return self._post(list(texts), "query")


class RemoteOcrEngine(OcrEngine):
    def __init__(self, client: ServiceClient) -> None:
        super().__init__()
        self.client = client
        self.engine_id = "remote"  # replaced by the service's engine id on the first answer

    def _read(self, image: Image.Image) -> OcrResult:
        files = {"image": ("image.png", encode_image(image), "image/png")}
        payload = self.client.request("POST", "/v1/ocr", files=files)
        self.engine_id = payload["engine_id"]
        return OcrResult(text=payload["text"], lines=[(text, conf) for text, conf in payload["lines"]])


class RemoteImageTextEmbedder:
    """Visual search's model in the ML service: images go as bytes to /v1/embed-image, texts to
    /v1/embed with the model's id. Same surface as ``ml.image_text.ImageTextEmbedder``."""

    backend = "remote"

    def __init__(self, client: ServiceClient, model_id: str) -> None:
        self.client = client
        self.model_id = model_id
        self.dim = 0  # learnt from the first answer

    def _checked(self, payload: dict) -> np.ndarray:
        if payload["model_id"] != self.model_id:
            raise ConfigError(f"the ML service embedded with {payload['model_id']!r}, not {self.model_id!r}")
        self.dim = payload["dim"]
        return decode_vectors(payload)

    def embed_images(self, images: Sequence[Image.Image]) -> np.ndarray:
        rows = []
        for image in images:
            files = {"image": ("image.png", encode_image(image), "image/png")}
            rows.append(self._checked(self.client.request("POST", "/v1/embed-image", data={"model": self.model_id},
                                                          files=files)))
        return np.concatenate(rows) if rows else np.zeros((0, self.dim), dtype=np.float32)

    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        payload = self.client.request("POST", "/v1/embed", json={"texts": list(texts), "model": self.model_id,
                                                                  "mode": "query"})
        return self._checked(payload)

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_texts([text])[0]


@dataclass(frozen=True)
class RemoteSpec:
    """What the pipeline needs of a caption model spec when the model lives in the service."""

    id: str


class RemoteCaptioner(Captioner):
    """Same surface as ChainCaptioner (``spec.id``, ``caption_images``) for Pipeline and jobs.

    Several images go in one /v1/caption-batch request; the service batches them only as far
    as its model allows (one per call for quantised weights), so results never depend on how
    many images a request carried."""

    backend = "remote"
    #: Images per request: what the jobs claim and decode at once when describing remotely (the
    #: service's SmolVLM batches up to 8).
    batch_size = 8

    def __init__(self, client: ServiceClient, model_id: str) -> None:
        super().__init__()
        self.client = client
        self.model_id = model_id
        self.spec = RemoteSpec(model_id)

    def _caption_batch(self, requests: list[CaptionRequest]) -> list[ChainCaptionResult]:
        if len(requests) == 1:
            return [self._caption_one(requests[0])]
        outcomes = self._caption_many(requests)
        failure = next((outcome for outcome in outcomes if isinstance(outcome, Exception)), None)
        if failure is not None:
            raise failure
        return outcomes  # type: ignore[return-value]

    def caption_outcomes(self, images: list[Image.Image]) -> list:
        """One entry per image: its caption, or the error the service reported for that image
        alone (memesearch.ml.caption_batches uses this instead of retrying a batch image by image)."""
        self.ensure_loaded()
        outcomes: list = []
        for start in range(0, len(images), self.batch_size):
            chunk = images[start:start + self.batch_size]
            outcomes += self._caption_many([CaptionRequest(image=image, prompt="", max_new_tokens=0) for image in chunk])
        return outcomes

    def _caption_many(self, requests: list[CaptionRequest]) -> list:
        form = self._form(requests[0])
        files = [("images", (f"image{i}.png", encode_image(request.image), "image/png")) for i, request in enumerate(requests)]
        # The service's time grows with the images of the request.
        timeout = httpx.Timeout(self.client.timeout_s * len(requests), connect=min(self.client.timeout_s, 5.0))
        payload = self.client.request("POST", "/v1/caption-batch", data=form, files=files, timeout=timeout)
        if len(payload["results"]) != len(requests):
            raise RemoteModelError(f"the ML service answered {len(payload['results'])} captions for {len(requests)} images")
        return [self._result(item["caption"], payload["model_id"]) if item.get("caption") else _item_error(item["problem"])
                for item in payload["results"]]

    def _form(self, request: CaptionRequest) -> dict[str, str]:
        form = {"model": self.model_id}
        if request.prompt:
            form["prompt"] = request.prompt
        if request.max_new_tokens:
            form["max_new_tokens"] = str(request.max_new_tokens)
        return form

    def _caption_one(self, request: CaptionRequest) -> ChainCaptionResult:
        files = {"image": ("image.png", encode_image(request.image), "image/png")}
        payload = self.client.request("POST", "/v1/caption", data=self._form(request), files=files)
        return self._result(payload, self.model_id)

    @staticmethod
    def _result(payload: dict, model_id: str) -> ChainCaptionResult:
        return ChainCaptionResult(
            text=payload["text"], token_ids=payload.get("token_ids", []), backend=payload.get("backend", "remote"),
            dtype=payload.get("dtype", ""), model_id=payload.get("model_id", model_id),
            revision=payload.get("revision", ""), ms=payload.get("ms", 0.0),
        )

    def caption_images(self, images: list[Image.Image]) -> list[ChainCaptionResult]:
        # No prompt: the service applies the model's own prompt and length from its registry.
        return self.caption([CaptionRequest(image=image, prompt="", max_new_tokens=0) for image in images])  # type: ignore[return-value]


def client_from_settings(settings: Settings) -> ServiceClient:
    return ServiceClient(settings.ml_urls, token=settings.ml_token, timeout_s=settings.ml_timeout_s)
