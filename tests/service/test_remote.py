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
from memesearch.errors import ImageError
from memesearch.library.decode import load_rgb
from memesearch.ml.remote import (
    RemoteCaptioner,
    RemoteEmbedder,
    RemoteOcrEngine,
    ServiceClient,
    ServiceUnavailableError,
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
