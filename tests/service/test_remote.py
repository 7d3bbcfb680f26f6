"""The remote backend against the service running as a real process on 127.0.0.1."""

from __future__ import annotations

import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from memesearch.app import Core
from memesearch.config import Settings
from memesearch.errors import ConfigError, ImageError, InvalidInputError, ModelNotReadyError, NotFoundError
from memesearch.library.decode import load_rgb
from memesearch.ml.remote import (
    RemoteCaptioner,
    RemoteEmbedder,
    RemoteModelError,
    RemoteOcrEngine,
    ServiceClient,
    ServiceUnavailableError,
    _client_error,
)
from tests.service.helpers import free_port, link_models, start_service, stop, write_fake_models

TEXTS = ["one does not simply walk into mordor", "distracted boyfriend", "", "Ünïcödé 日本語 memes"]


@pytest.fixture(scope="module")
def meme_images(tmp_path_factory) -> list[Path]:
    from memesearch.library.samples import render_sample_memes

    folder = tmp_path_factory.mktemp("remote_memes")
    render_sample_memes(folder, count=3, seed=11)
    return sorted(p for p in folder.rglob("*") if p.is_file())


@pytest.fixture(scope="module")
def local_embedder(shared_models_dir):
    from memesearch.ml.factory import text_embedder

    embedder = text_embedder("all-minilm-l6-v2", shared_models_dir / "all-minilm-l6-v2", threads=1)
    embedder.ensure_loaded()  # builds the shared ONNX once, before the service reads it
    return embedder


@pytest.fixture(scope="module")
def service_url(tmp_path_factory, shared_models_dir, local_embedder):
    home = tmp_path_factory.mktemp("service") / "data"
    write_fake_models(home, delay=1.0)
    link_models(home, shared_models_dir)
    port = free_port()
    proc = start_service(home, port, home.parent / "service.log", MEMESEARCH_ML_MAX_CONCURRENCY="2")
    yield f"http://127.0.0.1:{port}"
    stop(proc)


@pytest.fixture
def client(service_url):
    client = ServiceClient([service_url], timeout_s=30)
    yield client
    client.close()


def test_remote_embeddings_equal_in_process(client, local_embedder):
    remote = RemoteEmbedder(client, "all-minilm-l6-v2")
    vectors = remote.embed(TEXTS)
    assert remote.dim == local_embedder.dim == vectors.shape[1]
    np.testing.assert_allclose(vectors, local_embedder.embed(TEXTS), atol=1e-5)
    np.testing.assert_allclose(remote.embed_query(TEXTS[0]), local_embedder.embed_query(TEXTS[0]), atol=1e-5)


def test_remote_ocr_equals_in_process(client, meme_images):
    from memesearch.ml.ocr import RapidOcrEngine

    local = RapidOcrEngine(threads=1)
    remote = RemoteOcrEngine(client)
    for path in meme_images:
        image = load_rgb(path, 64)
        expected, got = local.read(image), remote.read(image)
        assert got.text == expected.text
        assert [t for t, _ in got.lines] == [t for t, _ in expected.lines]
        assert remote.engine_id == local.engine_id
    assert any(local.read(load_rgb(p, 64)).text for p in meme_images)  # the comparison is not vacuous


def test_remote_captions_equal_in_process(client, meme_images):
    from memesearch.ml.chain import load_captioner
    from memesearch.ml.registry import get_spec

    local = load_captioner(get_spec("fake"), Settings())
    remote = RemoteCaptioner(client, "fake")
    images = [load_rgb(p, 64) for p in meme_images]
    got, expected = remote.caption_images(images), local.caption_images(images)
    assert [r.text for r in got] == [r.text for r in expected]
    assert [r.token_ids for r in got] == [r.token_ids for r in expected]
    assert remote.spec.id == "fake"


def test_remote_captioner_sends_its_images_in_one_batch_request(client, meme_images):
    from memesearch.ml.caption_batches import batch_size_of, caption_each

    paths: list[str] = []
    client._http.event_hooks["request"].append(lambda request: paths.append(request.url.path))
    remote = RemoteCaptioner(client, "fake")
    images = [load_rgb(p, 64) for p in meme_images]
    first = remote.caption_images(images[:1])  # one image: the plain route; it also "loads" the captioner
    batched = caption_each(remote, images)
    assert paths == ["/v1/caption", "/v1/caption-batch"]
    assert batch_size_of(remote) == RemoteCaptioner.batch_size > 1  # the jobs claim this many at once
    assert batched[0].text == first[0].text and len({r.text for r in batched}) == len(images)


def test_an_image_problem_in_a_batch_answer_is_that_images_error():
    from memesearch.ml.remote import _item_error

    bad = _item_error({"type": "/problems/bad-image", "title": "t", "status": 422, "detail": "not an image"})
    assert isinstance(bad, ImageError) and bad.message == "not an image"
    failed = _item_error({"type": "/problems/model-failed", "title": "t", "status": 500, "detail": "injected failure"})
    assert isinstance(failed, RemoteModelError) and "injected failure" in failed.message


def test_an_unreachable_service_is_every_images_error_without_retrying_each():
    from memesearch.ml.caption_batches import caption_each

    attempts: list[str] = []
    client = ServiceClient([f"http://127.0.0.1:{free_port()}"], retries=0, backoff_s=0.01)
    client._http.event_hooks["request"].append(lambda request: attempts.append(request.url.path))
    results = caption_each(RemoteCaptioner(client, "fake"), [Image.new("RGB", (8, 8), c) for c in ("red", "blue", "green")])
    assert all(isinstance(r, ServiceUnavailableError) for r in results) and len(results) == 3
    assert attempts == ["/v1/caption-batch"]  # one request for the batch, not one more per image


def test_core_uses_the_remote_backend_when_urls_are_set(service_url, tmp_path):
    core = Core(Settings(home=tmp_path / "app", ml_urls=[service_url]))
    assert isinstance(core.embedder, RemoteEmbedder)
    assert isinstance(core.ocr, RemoteOcrEngine)
    assert isinstance(core.captioner("fake"), RemoteCaptioner)
    assert core.embedder.embed(["hello"]).shape == (1, 384)


def test_corrupt_image_via_remote_raises_image_error(client, tmp_path):
    response = httpx.post(f"{client.urls[0]}/v1/ocr", files={"image": ("x.png", b"\x89PNG broken", "image/png")})
    assert response.status_code == 422
    with pytest.raises(ImageError):
        client.request("POST", "/v1/ocr", files={"image": ("x.png", b"\x89PNG broken", "image/png")})


def _png() -> bytes:
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "green").save(buffer, format="PNG")
    return buffer.getvalue()


def test_service_errors_map_by_problem_type_not_by_wording(client):
    # No "image" field: a 422 whose text says "image"; only a bad-image problem is an ImageError.
    with pytest.raises(InvalidInputError, match="image") as missing_field:
        client.request("POST", "/v1/ocr", files={"picture": ("x.png", _png(), "image/png")})
    assert not isinstance(missing_field.value, ImageError)
    with pytest.raises(InvalidInputError, match="texts") as too_many:
        client.request("POST", "/v1/embed", json={"texts": ["an image"] * 300})
    assert not isinstance(too_many.value, ImageError)
    with pytest.raises(NotFoundError, match="image-model"):  # an unknown model, whatever its name says
        client.request("POST", "/v1/caption", files={"image": ("x.png", _png(), "image/png")}, data={"model": "image-model"})
    with pytest.raises(RemoteModelError, match="injected failure"):  # 500 /problems/model-failed
        client.request("POST", "/v1/caption", files={"image": ("x.png", _png(), "image/png")}, data={"model": "fake-broken"})


def test_a_problem_type_decides_even_when_the_wording_misleads():
    def answer(status: int, slug: str, detail: str) -> Exception:
        return _client_error(httpx.Response(status, json={"type": f"/problems/{slug}", "title": "t", "status": status,
                                                          "detail": detail, "hint": "do this"}))

    bad_image = answer(422, "bad-image", "the bytes are wrong")
    assert isinstance(bad_image, ImageError) and bad_image.hint == "do this"
    assert type(answer(422, "invalid-input", "image too large")) is InvalidInputError
    assert isinstance(answer(409, "model-not-ready", "download it first"), ModelNotReadyError)
    assert isinstance(answer(401, "unauthorized", "no"), ConfigError)
    # Not a problem body at all (a proxy's page): the status alone decides.
    assert isinstance(_client_error(httpx.Response(404, text="<html>gone</html>")), NotFoundError)
    assert type(_client_error(httpx.Response(422, text="an image error page"))) is InvalidInputError


def test_core_close_closes_the_ml_client_connection(service_url, tmp_path):
    core = Core(Settings(home=tmp_path / "app", ml_urls=[service_url]))
    assert core.embedder.embed(["keep-alive"]).shape == (1, 384)
    http = core.ml_client._http
    pool = http._transport._pool
    assert not http.is_closed and len(pool.connections) == 1  # the kept-alive connection to the service
    core.close()
    assert http.is_closed and pool.connections == []
    with pytest.raises(RuntimeError, match="closed"):
        http.get(f"{service_url}/healthz")


def test_core_close_without_remote_backend_builds_no_client(tmp_path):
    core = Core(Settings(home=tmp_path / "app", ml_urls=["http://127.0.0.1:9"]))
    core.close()
    assert "ml_client" not in core.__dict__


def test_failover_skips_a_dead_url_and_remembers_it(service_url):
    dead = f"http://127.0.0.1:{free_port()}"
    client = ServiceClient([dead, service_url], timeout_s=30, backoff_s=0.01)
    embedder = RemoteEmbedder(client, "all-minilm-l6-v2")
    assert embedder.embed(["failover works"]).shape == (1, 384)
    assert client._ordered() == [service_url, dead]  # the dead one is tried last from now on
    health = client.health()
    assert health[service_url]["ok"] and not health[dead]["ok"]


def test_no_live_url_is_a_transient_service_unavailable_error():
    client = ServiceClient([f"http://127.0.0.1:{free_port()}"], retries=1, backoff_s=0.01)
    with pytest.raises(ServiceUnavailableError, match="no ML service answered"):
        RemoteEmbedder(client, "all-minilm-l6-v2").embed(["x"])


def test_busy_service_answers_503_with_retry_after(service_url):
    """max_concurrency=2 and a 1 s model: of 5 simultaneous requests some must be refused at once."""
    import io

    buffer = io.BytesIO()
    Image.new("RGB", (32, 32), "blue").save(buffer, format="PNG")
    barrier = threading.Barrier(5)
    responses: list[httpx.Response] = []

    def post() -> None:
        barrier.wait()
        responses.append(httpx.post(f"{service_url}/v1/caption", timeout=30,
                                    files={"image": ("b.png", buffer.getvalue(), "image/png")}, data={"model": "fake-slow"}))

    threads = [threading.Thread(target=post) for _ in range(5)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    statuses = sorted(r.status_code for r in responses)
    assert 200 in statuses and 503 in statuses
    busy = next(r for r in responses if r.status_code == 503)
    assert busy.headers["retry-after"] == "1"
    assert httpx.get(f"{service_url}/v1/models").json()["rejected"] >= 1
