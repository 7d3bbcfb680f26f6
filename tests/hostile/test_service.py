"""The hostile corpus through the ML service: /v1/ocr (real RapidOCR) and /v1/caption (fake model).

Good bytes get 200, unusable bytes get 422 with the reason, and the service keeps serving.
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from memesearch.config import Settings
from memesearch.service.app import create_app
from tests.hostile.corpus import upload_cases
from tests.service.helpers import write_fake_models

CASES = upload_cases()
pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    home = tmp_path_factory.mktemp("hostile-service") / "data"
    write_fake_models(home, delay=0.0)
    with TestClient(create_app(Settings(home=home, threads=1)), raise_server_exceptions=False) as test_client:
        yield test_client


def _check(response, case) -> None:
    expected = case.upload_expected
    if expected == "indexed":
        assert response.status_code == 200, (case.name, response.text)
        return
    assert response.status_code == 422, (case.name, response.status_code, response.text)
    detail = response.json()["detail"]
    assert isinstance(detail, str) and len(detail) > 10 and "Traceback" not in detail
    reason = expected.split(":", 1)[1]
    assert reason.lower() in detail.lower(), (case.name, detail)


def test_the_corpus_is_big_enough():
    assert len(CASES) >= 50
    assert sum(c.upload_expected != "indexed" for c in CASES) >= 20


@pytest.mark.parametrize("case", CASES, ids=[c.name.encode("unicode_escape").decode()[-40:] for c in CASES])
def test_ocr_and_caption_answer_every_hostile_upload(client, case):
    filename = case.name.rsplit("/", 1)[-1]
    _check(client.post("/v1/ocr", files={"image": (filename, case.data, "image/png")}), case)
    _check(client.post("/v1/caption", files={"image": (filename, case.data, "application/octet-stream")},
                       data={"model": "fake"}), case)


def test_the_service_is_alive_and_clean_afterwards(client):
    assert client.get("/healthz").json()["ok"] is True
    models = client.get("/v1/models").json()
    assert models["in_flight"] == 0
    good = next(c for c in CASES if c.name == "odd/palette.png")
    assert client.post("/v1/caption", files={"image": ("p.png", good.data, "image/png")},
                       data={"model": "fake"}).status_code == 200
