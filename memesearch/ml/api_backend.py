"""Captions from any OpenAI-compatible ``/chat/completions`` vision endpoint.

OpenAI itself, Ollama, vLLM and llama.cpp's server all accept the same shape:
a user message whose content holds the text prompt and the image as a base64
``data:`` URL. Transient failures (429, 5xx, connection errors) are retried
with exponential backoff, honouring ``Retry-After``; other 4xx are permanent.
"""

from __future__ import annotations

import base64
import io
import logging
import os
import re
import time

import httpx
from PIL import Image

from memesearch.errors import ModelUnavailableError
from memesearch.ml.base import CaptionRequest, CaptionResult, Captioner
from memesearch.ml.failures import ApiKeyMissingError
from memesearch.ml.registry import ApiSource

log = logging.getLogger(__name__)

#: Florence-style task tokens mean nothing to a chat model.
_TASK_TOKEN_RE = re.compile(r"^<[A-Z_]+>$")
DEFAULT_API_PROMPT = "Describe this meme in one or two short sentences. Include any visible text exactly as written."
#: Longest side sent to the API: enough to read meme text, cheap to upload.
MAX_UPLOAD_PX = 1024
MAX_RETRY_AFTER_S = 60.0


class ApiError(ModelUnavailableError):
    """The API answered with an error we cannot retry away."""


def image_data_url(image: Image.Image) -> str:
    image = image.convert("RGB")
    if max(image.size) > MAX_UPLOAD_PX:
        image = image.copy()
        image.thumbnail((MAX_UPLOAD_PX, MAX_UPLOAD_PX))
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


class ApiCaptioner(Captioner):
    backend = "api"
    dtype = "remote"

    def __init__(
        self,
        source: ApiSource,
        *,
        model_id: str = "openai",
        default_prompt: str = DEFAULT_API_PROMPT,
        backoff_s: float = 1.0,
    ) -> None:
        super().__init__()
        self.source = source
        self.model_id = model_id
        self.default_prompt = default_prompt
        self.backoff_s = backoff_s
        self._client = None

    def _api_key(self) -> str | None:
        if self.source.api_key is not None and self.source.api_key.get_secret_value():
            return self.source.api_key.get_secret_value()  # saved on the Settings page
        if not self.source.api_key_env:
            return None
        key = os.environ.get(self.source.api_key_env, "").strip()
        if not key:
            raise ApiKeyMissingError(
                f"the API backend needs a key in the environment variable {self.source.api_key_env}",
                hint=f"save a key on the web Settings page, or export {self.source.api_key_env}=... "
                     "(or set api_key_env: null in models.yml for a local server)",
            )
        return key

    def _load(self) -> None:
        headers = {"Content-Type": "application/json"}
        key = self._api_key()
        if key:
            headers["Authorization"] = f"Bearer {key}"
        self._client = httpx.Client(base_url=self.source.base_url, headers=headers, timeout=self.source.timeout_s)

    def close(self) -> None:
        if self._client is not None:
            self._client.close()

    def _caption_batch(self, requests: list[CaptionRequest]) -> list[CaptionResult]:
        return [self._caption_one(request) for request in requests]

    def _payload(self, request: CaptionRequest) -> dict:
        prompt = request.prompt if request.prompt and not _TASK_TOKEN_RE.match(request.prompt) else self.default_prompt
        return {
            "model": self.source.model,
            "max_tokens": request.max_new_tokens,
            "temperature": 0,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "text", "text": prompt},
                        {"type": "image_url", "image_url": {"url": image_data_url(request.image)}},
                    ],
                }
            ],
        }

    def _caption_one(self, request: CaptionRequest) -> CaptionResult:
        payload = self._payload(request)
        url = f"{self.source.base_url}/chat/completions"
        attempts = self.source.retries + 1
        last_problem = ""
        for attempt in range(attempts):
            try:
                response = self._client.post("/chat/completions", json=payload)
            except httpx.TransportError as exc:  # connection refused, timeouts, resets
                last_problem = f"cannot reach {url}: {exc.__class__.__name__}: {exc}"
                delay = self._backoff(attempt)
            else:
                if response.status_code == 200:
                    return self._parse(response, url)
                last_problem = f"{url} answered HTTP {response.status_code}: {_short_body(response)}"
                if not _retryable(response.status_code):
                    raise _permanent_error(response.status_code, last_problem, self.source)
                server_says = _retry_after(response)
                delay = self._backoff(attempt) if server_says is None else server_says
            if attempt + 1 < attempts:
                log.warning("API caption attempt %d/%d failed (%s); retrying in %.1fs", attempt + 1, attempts, last_problem, delay)
                time.sleep(delay)
        raise ApiError(
            f"API caption failed after {attempts} attempts: {last_problem}",
            hint="check that the server is up and not overloaded; retries are set in models.yml (retries, timeout_s)",
        )

    def _backoff(self, attempt: int) -> float:
        return self.backoff_s * (2**attempt)

    @staticmethod
    def _parse(response, url: str) -> CaptionResult:
        try:
            text = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError) as exc:
            raise ApiError(f"{url} returned an unexpected response: {_short_body(response)}") from exc
        if isinstance(text, list):  # some servers return content parts
            text = " ".join(part.get("text", "") for part in text if isinstance(part, dict))
        return CaptionResult(text=(text or "").strip())


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _retry_after(response) -> float | None:
    value = response.headers.get("Retry-After", "")
    try:
        return min(max(float(value), 0.0), MAX_RETRY_AFTER_S)
    except ValueError:
        return None  # HTTP-date form: rare from APIs, fall back to our own backoff


def _short_body(response, limit: int = 300) -> str:
    text = response.text.strip().replace("\n", " ")
    return text[:limit] + ("..." if len(text) > limit else "")


def _permanent_error(status: int, problem: str, source: ApiSource) -> ApiError:
    if status in (401, 403):
        env = source.api_key_env or "the API key"
        return ApiError(
            f"{problem} (the API key is wrong or missing)",
            hint=f"save a valid key on the web Settings page, or set {env}",
        )
    if status == 404:
        return ApiError(problem, hint=f"check base_url ({source.base_url}) and model ({source.model}) in models.yml")
    return ApiError(problem, hint="the request was refused; this is not retried")
