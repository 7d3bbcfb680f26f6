"""The service's HTTP contract, in-process (FastAPI TestClient): inputs, limits, errors, tokens, models."""

from __future__ import annotations

import io
import threading

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from memesearch.config import Settings
from memesearch.errors import ConfigError
from memesearch.service.app import create_app
from memesearch.service.pool import ModelPool
from memesearch.net import is_loopback
from memesearch.service.server import check_bind
from tests.service.helpers import write_fake_models


def png_bytes(size=(48, 32), colour=(200, 30, 30)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


@pytest.fixture
def home(tmp_path):
    write_fake_models(tmp_path / "data", delay=0.3)
    return tmp_path / "data"


@pytest.fixture
def client(home):
    with TestClient(create_app(Settings(home=home, ml_max_upload_mb=0.05))) as test_client:
        yield test_client


def caption(client, data: bytes, model: str = "fake", **form):
    return client.post("/v1/caption", files={"image": ("m.png", data, "image/png")}, data={"model": model, **form})


def test_caption_matches_the_in_process_fake_model(client):
    from memesearch.ml.chain import load_captioner
    from memesearch.ml.registry import get_spec

    response = caption(client, png_bytes())
    assert response.status_code == 200, response.text
    local = load_captioner(get_spec("fake"), Settings()).caption_images([Image.new("RGB", (48, 32), (200, 30, 30))])[0]
    assert response.json()["text"] == local.text
    assert response.json()["token_ids"] == local.token_ids
    assert response.json()["model_id"] == "fake"


def test_caption_options_are_applied(client):
    response = caption(client, png_bytes(), max_new_tokens="3")
    assert response.status_code == 200
    assert len(response.json()["text"].split()) == 3


def test_corrupt_and_truncated_images_get_422_with_a_reason(client):
    response = caption(client, b"definitely not an image")
    assert response.status_code == 422
    assert "not an image" in response.json()["detail"]
    truncated = png_bytes((200, 200))[:300]
    response = client.post("/v1/ocr", files={"image": ("t.png", truncated, "image/png")})
    assert response.status_code == 422
    assert "image" in response.json()["detail"].lower()


def test_oversized_upload_gets_413_and_the_service_keeps_serving(client):
    noise = Image.frombytes("RGB", (200, 200), bytes(range(256)) * 468 + bytes(192))
    buffer = io.BytesIO()
    noise.save(buffer, format="BMP")  # uncompressed: ~120 kB, over the 50 kB test limit
    response = caption(client, buffer.getvalue())
    assert response.status_code == 413
    assert "too large" in response.json()["detail"]
    assert caption(client, png_bytes()).status_code == 200


def test_paths_sent_by_a_client_are_never_read(client, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("root:x:0:0:TOP-SECRET")
    attempts = [
        client.post("/v1/ocr", data={"image_path": str(secret)}),
        client.post("/v1/ocr", json={"path": str(secret)}),
        client.post("/v1/caption", data={"image": str(secret), "model": "fake"}),
        client.post("/v1/caption", data={"image": "../../../../etc/passwd", "model": "fake"}),
        client.get("/v1/../../etc/passwd"),
        client.get(f"/v1/files/{secret}"),
    ]
    for response in attempts:
        assert 400 <= response.status_code < 500, response.text
        assert "TOP-SECRET" not in response.text and "root:x" not in response.text
    # A model id cannot smuggle a path either: it is looked up in the registry only.
    response = caption(client, png_bytes(), model="../../../etc/passwd")
    assert response.status_code == 404


def test_unknown_model_is_404(client):
    response = caption(client, png_bytes(), model="no-such-model")
    assert response.status_code == 404
    assert "unknown model" in response.json()["detail"]


def test_model_failure_is_500_with_reason_and_the_service_keeps_serving(client):
    statuses = [caption(client, png_bytes(), model="fake-flaky") for _ in range(4)]  # fail_every=3
    assert [r.status_code for r in statuses] == [200, 200, 500, 200]
    assert "injected failure" in statuses[2].json()["detail"]
    assert client.get("/healthz").status_code == 200


def test_embed_validates_its_input(client):
    assert client.post("/v1/embed", json={"texts": ["x"] * 300}).status_code == 422
    assert client.post("/v1/embed", json={"texts": ["x"], "mode": "sideways"}).status_code == 422
    assert client.post("/v1/embed", json={"texts": ["x" * 30_000], "model": "all-minilm-l6-v2"}).status_code == 422
    assert client.post("/v1/embed", json={"texts": ["x"], "model": "nope"}).status_code == 404


def test_models_lists_what_is_loaded_and_openapi_is_served(client):
    caption(client, png_bytes())
    body = client.get("/v1/models").json()
    assert [(m["kind"], m["name"]) for m in body["loaded"]] == [("caption", "fake")]
    assert body["memory"]["peak_rss_mb"] > 0
    paths = client.get("/openapi.json").json()["paths"]
    assert {"/v1/caption", "/v1/ocr", "/v1/embed", "/v1/models", "/healthz"} <= set(paths)


def test_token_is_required_when_configured(home):
    with TestClient(create_app(Settings(home=home, ml_token="s3cret"))) as client:
        assert client.get("/healthz").status_code == 200  # liveness stays open for load balancers
        assert client.get("/v1/models").status_code == 401
        assert client.get("/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert client.get("/v1/models", headers={"Authorization": "Bearer s3cret"}).status_code == 200


def test_binding_beyond_loopback_needs_a_token():
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0")
    check_bind("127.0.0.1", Settings())
    with pytest.raises(ConfigError, match="without a token"):
        check_bind("0.0.0.0", Settings(ml_token=""))
    check_bind("0.0.0.0", Settings(ml_token="long-random-secret"))


def test_concurrent_first_requests_load_a_model_once(home):
    pool = ModelPool(Settings(home=home), ttl_s=0)
    barrier = threading.Barrier(4)

    def use() -> None:
        barrier.wait()
        with pool.use("caption", "fake-slow"):
            pass

    threads = [threading.Thread(target=use) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert pool.load_counts == {("caption", "fake-slow"): 1}


def test_idle_models_unload_after_the_ttl_and_ttl_zero_keeps_them(home):
    pool = ModelPool(Settings(home=home), ttl_s=10)
    with pool.use("caption", "fake"):
        assert pool.sweep(now=10**12) == []  # in use: never unloaded
    last_used = pool.loaded()[0]["last_used"]
    assert pool.sweep(now=last_used + 5) == []
    assert pool.sweep(now=last_used + 11) == [("caption", "fake")]
    assert pool.loaded() == []
    forever = ModelPool(Settings(home=home), ttl_s=0)
    with forever.use("caption", "fake"):
        pass
    assert forever.sweep(now=10**12) == []


def test_preload_loads_at_startup(home):
    settings = Settings(home=home, ml_preload=["fake"])
    with TestClient(create_app(settings)) as client:
        assert [m["name"] for m in client.get("/v1/models").json()["loaded"]] == ["fake"]
