"""The OpenAI-compatible API backend against a real local HTTP server."""

from __future__ import annotations

import base64
import io
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from PIL import Image

from memesearch.errors import ConfigError
from memesearch.ml.api_backend import ApiCaptioner, ApiError
from memesearch.ml.base import CaptionRequest
from memesearch.ml.registry import ApiSource


class FakeOpenAI:
    """A tiny /v1/chat/completions server: answers from a script, records every request."""

    def __init__(self) -> None:
        self.script: list[tuple[int, dict, dict]] = []  # (status, headers, body) per request
        self.requests: list[dict] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 - http.server's naming
                length = int(self.headers["Content-Length"])
                outer.requests.append(
                    {"path": self.path, "headers": dict(self.headers), "json": json.loads(self.rfile.read(length))}
                )
                status, headers, body = outer.script.pop(0) if outer.script else (200, {}, outer.reply("ok"))
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):  # keep test output clean
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @staticmethod
    def reply(text: str) -> dict:
        return {"choices": [{"index": 0, "message": {"role": "assistant", "content": text}}]}

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}/v1"


@pytest.fixture
def server():
    fake = FakeOpenAI()
    fake.thread.start()
    yield fake
    fake.server.shutdown()
    fake.server.server_close()


@pytest.fixture
def api_key(monkeypatch):
    monkeypatch.setenv("TEST_OPENAI_KEY", "sk-test-123")


def make_captioner(server, *, retries: int = 2) -> ApiCaptioner:
    source = ApiSource(base_url=server.base_url, model="vision-test", api_key_env="TEST_OPENAI_KEY", timeout_s=5, retries=retries)
    return ApiCaptioner(source, model_id="openai", backoff_s=0.01)


def request(prompt: str = "Describe this meme.") -> CaptionRequest:
    return CaptionRequest(image=Image.new("RGB", (64, 48), (200, 30, 30)), prompt=prompt, max_new_tokens=40)


def test_success_sends_the_image_as_a_data_url(server, api_key):
    server.script.append((200, {}, FakeOpenAI.reply("  a red square meme  ")))
    result = make_captioner(server).caption([request()])[0]
    assert result.text == "a red square meme"
    assert result.backend == "api"
    sent = server.requests[0]
    assert sent["path"] == "/v1/chat/completions"
    assert sent["headers"]["Authorization"] == "Bearer sk-test-123"
    body = sent["json"]
    assert body["model"] == "vision-test"
    assert body["max_tokens"] == 40
    assert body["temperature"] == 0
    text_part, image_part = body["messages"][0]["content"]
    assert text_part == {"type": "text", "text": "Describe this meme."}
    url = image_part["image_url"]["url"]
    assert url.startswith("data:image/jpeg;base64,")
    decoded = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
    assert decoded.size == (64, 48)
    red, green, blue = decoded.convert("RGB").getpixel((32, 24))
    assert red > 150 and green < 80 and blue < 80


def test_task_tokens_are_replaced_by_a_real_question(server, api_key):
    make_captioner(server).caption([request("<MORE_DETAILED_CAPTION>")])
    text = server.requests[0]["json"]["messages"][0]["content"][0]["text"]
    assert "<" not in text and "meme" in text


@pytest.mark.timeout(20)
def test_429_is_retried_honouring_retry_after(server, api_key):
    server.script.append((429, {"Retry-After": "0"}, {"error": {"message": "slow down"}}))
    server.script.append((200, {}, FakeOpenAI.reply("second time lucky")))
    captioner = make_captioner(server)
    captioner.backoff_s = 600  # our own backoff would outlast the timeout: Retry-After must win
    result = captioner.caption([request()])[0]
    assert result.text == "second time lucky"
    assert len(server.requests) == 2


def test_401_is_permanent_and_says_the_key_is_wrong(server, api_key):
    server.script.append((401, {}, {"error": {"message": "Incorrect API key provided"}}))
    with pytest.raises(ApiError) as error:
        make_captioner(server).caption([request()])
    assert "key is wrong or missing" in error.value.message
    assert "TEST_OPENAI_KEY" in error.value.hint
    assert len(server.requests) == 1  # never retried


def test_500_is_retried_then_reported(server, api_key):
    server.script.extend([(500, {}, {"error": "boom"})] * 3)
    with pytest.raises(ApiError) as error:
        make_captioner(server, retries=2).caption([request()])
    assert "after 3 attempts" in error.value.message
    assert "HTTP 500" in error.value.message
    assert len(server.requests) == 3


def test_connection_errors_are_retried_then_reported(api_key):
    source = ApiSource(base_url="http://127.0.0.1:9/v1", model="m", api_key_env="TEST_OPENAI_KEY", timeout_s=2, retries=1)
    with pytest.raises(ApiError, match="cannot reach http://127.0.0.1:9/v1/chat/completions"):
        ApiCaptioner(source, backoff_s=0.01).caption([request()])


def test_missing_key_is_a_config_error_naming_the_variable(server, monkeypatch):
    monkeypatch.delenv("TEST_OPENAI_KEY", raising=False)
    with pytest.raises(ConfigError, match="TEST_OPENAI_KEY"):
        make_captioner(server).ensure_loaded()


def test_cli_caption_through_the_chain_with_a_user_configured_server(server, tmp_path, monkeypatch):
    """A local OpenAI-compatible server configured in <data dir>/models.yml, no key needed."""
    from typer.testing import CliRunner

    from memesearch.cli import app

    home = tmp_path / "data"
    home.mkdir()
    (home / "models.yml").write_text(
        f"models:\n  openai:\n    sources:\n      api: {{base_url: '{server.base_url}', model: llava, api_key_env: null}}\n"
    )
    picture = tmp_path / "meme.png"
    Image.new("RGB", (50, 50), (0, 0, 0)).save(picture)
    server.script.append((200, {}, FakeOpenAI.reply("a black square")))
    # smolvlm-256m has no API source of its own: its api fallback uses the `openai` entry.
    result = CliRunner().invoke(
        app, ["--data-dir", str(home), "caption", str(picture), "--model", "smolvlm-256m", "--backend", "api", "--json"]
    )
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload == {"model": "smolvlm-256m", "backend": "api", "text": "a black square", "ms": payload["ms"]}
    sent = server.requests[0]
    assert "Authorization" not in sent["headers"]
    assert sent["json"]["model"] == "llava"
    assert sent["json"]["messages"][0]["content"][0]["text"].startswith("Describe this meme")
