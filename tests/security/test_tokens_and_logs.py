"""The ML service refuses every unauthenticated call when a token is set, and neither the web
app, the ML service nor the remote client ever writes the password or a token to a log."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient
from PIL import Image
from starlette.routing import Route

from memesearch.app import Core
from memesearch.config import Settings
from memesearch.errors import MemeSearchError
from memesearch.service.app import create_app as create_service
from memesearch.web import create_app
from tests.reliability import tried
from tests.security.conftest import API_TOKEN, PASSWORD
from tests.service.helpers import free_port, link_models, start_service, stop, write_fake_models

ML_TOKEN = "ml-token-9c4e7f0a1b2d"
PUBLIC = {"/healthz"}  # with a token set, even the schema and docs pages need it
pytestmark = pytest.mark.timeout(120)


def test_the_ml_service_refuses_every_unauthenticated_call(tmp_path):
    write_fake_models(tmp_path, delay=0.0)
    app = create_service(Settings(home=tmp_path, ml_token=ML_TOKEN, caption_model="fake"))
    client = TestClient(app, raise_server_exceptions=False)
    routes = [(method, route.path) for route in app.routes if isinstance(route, Route)
              for method in sorted(route.methods or ()) if method != "HEAD"]
    guarded = [(m, p) for m, p in routes if p not in PUBLIC]
    assert {("POST", "/v1/ocr"), ("POST", "/v1/caption"), ("POST", "/v1/embed"), ("GET", "/v1/models"),
            ("GET", "/openapi.json"), ("GET", "/docs"), ("GET", "/redoc")} <= set(guarded)
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": ML_TOKEN[:-1]},
                    {"Authorization": ML_TOKEN}, {"Authorization": f"Basic {ML_TOKEN}"},
                    {"Authorization": f"Bearer{ML_TOKEN}"}, {"Authorization": f"Bearer {ML_TOKEN}x"},
                    {"X-Token": ML_TOKEN}):
        for method, path in guarded:
            response = client.request(method, path, headers=headers)
            assert response.status_code == 401, (method, path, headers, response.status_code)
            tried()
    right = {"Authorization": f"Bearer {ML_TOKEN}"}
    assert client.get("/v1/models", headers=right).status_code == 200
    assert "/v1/ocr" in client.get("/openapi.json", headers=right).json()["paths"]
    assert "swagger" in client.get("/docs", headers=right).text.lower()
    assert client.get("/healthz").status_code == 200


def test_without_a_token_the_ml_service_docs_stay_public(tmp_path):
    write_fake_models(tmp_path, delay=0.0)
    client = TestClient(create_service(Settings(home=tmp_path, caption_model="fake")))
    assert "/v1/embed" in client.get("/openapi.json").json()["paths"]
    assert client.get("/docs").status_code == 200 and client.get("/redoc").status_code == 200


def test_no_secret_reaches_any_log(locked, tmp_path, shared_models_dir, caplog, capfd):
    core, _, _ = locked
    caplog.set_level(logging.DEBUG)
    secrets = [PASSWORD, API_TOKEN, ML_TOKEN]

    # Web: wrong and right password, bearer token, a bad bearer token.
    app = create_app(core=core)
    client = TestClient(app, raise_server_exceptions=False, follow_redirects=False)
    client.get("/login")
    csrf = client.cookies["ms_csrf"]
    client.post("/login", data={"password": PASSWORD[::-1], "csrf_token": csrf})
    client.post("/login", data={"password": PASSWORD, "csrf_token": csrf})
    client.get("/api/tags")
    TestClient(app).get("/api/tags", headers={"Authorization": f"Bearer {API_TOKEN}"})
    TestClient(app).get("/api/tags", headers={"Authorization": f"Bearer {API_TOKEN}x"})

    # ML service (a real process, verbose) and the remote client with the token.
    service_home = tmp_path / "service"
    write_fake_models(service_home, delay=0.0)
    link_models(service_home, shared_models_dir)
    port = free_port()
    log = tmp_path / "service.log"
    service = start_service(service_home, port, log, MEMESEARCH_ML_TOKEN=ML_TOKEN)
    try:
        remote = Core(Settings(home=tmp_path / "app", ml_urls=[f"http://127.0.0.1:{port}"], ml_token=ML_TOKEN))
        blank = remote.ocr.read(Image.new("RGB", (40, 20), "white"))
        # The service answered: its engine id replaced the client's placeholder, and a blank image has no text.
        assert remote.ocr.engine_id.startswith("rapidocr") and blank.text == "" and blank.lines == []
        wrong = Core(Settings(home=tmp_path / "wrong", ml_urls=[f"http://127.0.0.1:{port}"], ml_token="x" + ML_TOKEN))
        with pytest.raises(MemeSearchError, match="token"):
            wrong.ocr.read(Image.new("RGB", (40, 20), "white"))
    finally:
        stop(service)
    captured = capfd.readouterr()
    logs = {"caplog": caplog.text, "service log": log.read_text(), "stdout": captured.out, "stderr": captured.err}
    assert caplog.text, "logging was captured at all"
    for where, text in logs.items():
        for secret in secrets:
            assert secret not in text and secret[::-1] not in text, f"a secret appears in the {where}"
