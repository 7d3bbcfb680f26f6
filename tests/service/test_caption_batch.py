"""POST /v1/caption-batch in-process: several uploaded images per request, batched as far as the
model allows, one answer per image (a caption or that image's own problem), limits per image and
per request. The fake captioner is only the model boundary."""

from __future__ import annotations

import io

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from memesearch.config import Settings
from memesearch.problems import PROBLEM_JSON
from memesearch.service.app import MAX_CAPTION_IMAGES, create_app
from tests.service.helpers import write_fake_models
from tests.service.test_service_api import png_bytes

COLOURS = [(200, 30, 30), (30, 200, 30), (30, 30, 200), (220, 220, 40), (10, 10, 10)]


def png(colour, size=(48, 32)) -> bytes:
    return png_bytes(size, colour)


@pytest.fixture
def client(tmp_path):
    write_fake_models(tmp_path / "data", delay=0.0)
    with TestClient(create_app(Settings(home=tmp_path / "data", ml_max_upload_mb=0.05))) as test_client:
        yield test_client


def batch(client, images: list[bytes], model: str = "fake-batched", **form):
    files = [("images", (f"m{i}.png", data, "image/png")) for i, data in enumerate(images)]
    return client.post("/v1/caption-batch", files=files, data={"model": model, **form})


def one(client, data: bytes, model: str = "fake-batched", **form) -> dict:
    response = client.post("/v1/caption", files={"image": ("m.png", data, "image/png")}, data={"model": model, **form})
    assert response.status_code == 200, response.text
    return response.json()


def model_calls(client, model: str) -> list[int]:
    """Record how many images each call of the service's loaded fake model gets."""
    with client.app.state.pool.use("caption", model) as chain:
        fake = chain._opened["fake"].captioner
    calls: list[int] = []
    original = fake._caption_batch

    def counting(requests):
        calls.append(len(requests))
        return original(requests)

    fake._caption_batch = counting
    return calls


def test_a_batch_answers_what_single_requests_answer_in_upload_order(client):
    images = [png(colour) for colour in COLOURS]
    expected = [one(client, data) for data in images]
    calls = model_calls(client, "fake-batched")
    response = batch(client, images)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["model_id"] == "fake-batched" and len(body["results"]) == len(images)
    for got, want in zip(body["results"], expected, strict=True):
        assert "problem" not in got
        assert (got["caption"]["text"], got["caption"]["token_ids"]) == (want["text"], want["token_ids"])
    assert calls == [4, 1]  # the model's batch size (4), then the rest


def test_options_apply_to_every_image(client):
    body = batch(client, [png(c) for c in COLOURS[:3]], max_new_tokens="2").json()
    assert [len(r["caption"]["text"].split()) for r in body["results"]] == [2, 2, 2]


def test_a_bad_image_gets_its_own_problem_and_the_others_their_captions(client):
    images = [png(COLOURS[0]), b"definitely not an image", png(COLOURS[1])]
    body = batch(client, images).json()
    good, bad, other = body["results"]
    assert bad["problem"]["type"] == "/problems/bad-image" and bad["problem"]["status"] == 422
    assert "not an image" in bad["problem"]["detail"] and "caption" not in bad
    assert good["caption"]["text"] == one(client, images[0])["text"]
    assert other["caption"]["text"] == one(client, images[2])["text"]


def test_a_model_failure_on_one_image_is_that_images_problem(client):
    body = batch(client, [png(c) for c in COLOURS[:4]], model="fake-flaky").json()  # every third image fails
    kinds = [r["problem"]["type"] if "problem" in r else "caption" for r in body["results"]]
    assert kinds == ["caption", "caption", "/problems/model-failed", "caption"]
    assert "injected failure" in body["results"][2]["problem"]["detail"]


def test_limits_per_image(tmp_path):
    write_fake_models(tmp_path / "data", delay=0.0)
    with TestClient(create_app(Settings(home=tmp_path / "data", max_megapixels=0.001))) as client:
        body = batch(client, [png(COLOURS[0], (16, 16)), png(COLOURS[1], (48, 32))]).json()  # 256 and 1536 pixels
    assert "caption" in body["results"][0]
    assert body["results"][1]["problem"]["type"] == "/problems/bad-image"


def test_limits_per_request(client):
    too_many = batch(client, [png(COLOURS[0], (8, 8))] * (MAX_CAPTION_IMAGES + 1))
    assert too_many.status_code == 422 and too_many.headers["content-type"] == PROBLEM_JSON
    assert str(MAX_CAPTION_IMAGES) in too_many.json()["detail"]
    none = client.post("/v1/caption-batch", data={"model": "fake-batched"})
    assert none.status_code == 422 and none.json()["type"] == "/problems/invalid-input"
    # Each image is under the 50 kB test limit; together they are not: the body limit is per request.
    noise = Image.frombytes("RGB", (80, 80), bytes(range(256)) * 75)
    buffer = io.BytesIO()
    noise.save(buffer, format="BMP")  # uncompressed, ~19 kB
    assert len(buffer.getvalue()) < 50_000
    too_large = batch(client, [buffer.getvalue()] * 3)
    assert too_large.status_code == 413 and too_large.json()["type"] == "/problems/too-large"
    assert batch(client, [buffer.getvalue()]).status_code == 200


def test_unknown_model_is_a_404_problem_for_the_whole_request(client):
    response = batch(client, [png(COLOURS[0])], model="no-such-model")
    assert response.status_code == 404 and response.headers["content-type"] == PROBLEM_JSON


def test_the_route_is_documented(client):
    operation = client.get("/openapi.json").json()["paths"]["/v1/caption-batch"]["post"]
    assert "multipart/form-data" in operation["requestBody"]["content"]
    assert {"200", "422", "413", "503"} <= set(operation["responses"])


@pytest.mark.parametrize("route", ["/v1/caption", "/v1/caption-batch"])
def test_an_empty_number_field_is_refused_not_defaulted(client, route):
    """FastAPI reads an empty form field as absent; sending ``max_new_tokens=`` is a client
    mistake and must not be captioned with the model's default length."""
    field = "image" if route == "/v1/caption" else "images"
    response = client.post(route, files=[(field, ("m.png", png(COLOURS[0]), "image/png"))],
                           data={"model": "fake-batched", "max_new_tokens": ""})
    assert response.status_code == 422
    assert response.headers["content-type"].startswith(PROBLEM_JSON)
    assert "max_new_tokens" in response.json()["detail"]
    assert batch(client, [png(COLOURS[0])], max_new_tokens="8").status_code == 200


def test_a_batch_with_no_usable_image_is_refused_like_one_bad_image(client):
    """Some bad images: 200 with their own problems; none usable: the request itself is 422."""
    response = batch(client, [b"not an image", b"\x89PNG broken"])
    assert response.status_code == 422
    assert response.json()["type"] == "/problems/bad-image"
    mixed = batch(client, [b"not an image", png(COLOURS[1])])
    assert mixed.status_code == 200
    assert [("problem" in r, "caption" in r) for r in mixed.json()["results"]] == [(True, False), (False, True)]
