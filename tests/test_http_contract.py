"""The HTTP contract of both apps (issue 12, "typed HTTP"): every JSON request body is a documented
schema, and every error answer is an RFC 9457 problem (``application/problem+json``)."""

from __future__ import annotations

import inspect
import io

import pytest
from fastapi.routing import APIRoute
from fastapi.testclient import TestClient
from PIL import Image

from memesearch.config import Settings
from memesearch.problems import PROBLEM_JSON, TITLES
from memesearch.service.app import create_app as create_service
from memesearch.web import create_app as create_web
from tests.service.helpers import write_fake_models

WRITE_METHODS = {"post", "put", "patch"}
# Reading the body by hand instead of declaring it: what the OpenAPI document cannot see.
HAND_PARSING = ("request.json(", "request.body(", "request.form(", "request.stream(")


@pytest.fixture
def web_app(tmp_path):
    return create_web(Settings(home=tmp_path / "web", api_token="right-token-123",
                               login_limits="3/minute", login_global_limits="100/minute"))


@pytest.fixture
def web(web_app):
    client = TestClient(web_app, raise_server_exceptions=False)
    client.get("/healthz")
    client.headers["X-CSRF-Token"] = client.cookies["ms_csrf"]
    client.headers["Authorization"] = "Bearer right-token-123"
    return client


@pytest.fixture
def service_home(tmp_path):
    home = tmp_path / "service"
    write_fake_models(home, delay=0.0)
    return home


@pytest.fixture
def service(service_home):
    with TestClient(create_service(Settings(home=service_home, ml_max_upload_mb=0.05)),
                    raise_server_exceptions=False) as client:
        yield client


def _resolve(document: dict, schema: dict) -> dict:
    """The object schema behind references and an optional body's ``anyOf: [model, null]``."""
    if "anyOf" in schema:
        schema = next(option for option in schema["anyOf"] if option.get("type") != "null")
    while "$ref" in schema:
        name = schema["$ref"].rsplit("/", 1)[1]
        schema = document["components"]["schemas"][name]
    return schema


def _api_routes(routes):
    for route in routes:
        if isinstance(route, APIRoute):
            yield route
        elif hasattr(route, "original_router"):  # an included router (FastAPI >= 0.16x wraps them)
            yield from _api_routes(route.original_router.routes)


def _json_routes(app, prefix: str):
    """(route, method) for every write route under ``prefix`` that the app defines."""
    for route in _api_routes(app.routes):
        if route.path.startswith(prefix) and route.include_in_schema:
            for method in sorted(m.lower() for m in route.methods or ()):
                if method in WRITE_METHODS:
                    yield route, method


@pytest.mark.parametrize("which", ["web", "service"])
def test_every_write_route_documents_its_request_body(which, web_app, service_home):
    app, prefix = (web_app, "/api/") if which == "web" else (create_service(Settings(home=service_home)), "/v1/")
    document = app.openapi()
    checked = 0
    for route, method in _json_routes(app, prefix):
        operation = document["paths"][route.path_format][method]
        body = operation.get("requestBody")
        source = inspect.getsource(route.endpoint)
        if body is None:
            # No documented body: then the handler must not read one either.
            assert not any(call in source for call in HAND_PARSING), f"{method.upper()} {route.path} reads an undocumented body"
            continue
        for media_type, content in body["content"].items():
            schema = _resolve(document, content.get("schema", {}))
            assert schema.get("properties"), f"{method.upper()} {route.path}: {media_type} body without fields"
        if "application/json" in body["content"]:
            checked += 1
            # Declared, so FastAPI validates it: no handler parses JSON by hand.
            assert "request.json(" not in source, f"{method.upper()} {route.path} parses its JSON by hand"
    assert checked >= (10 if which == "web" else 1)


def test_the_bodies_the_issue_named_are_documented(web_app):
    paths = web_app.openapi()["paths"]
    for path, method, field in (("/api/memes/{meme_id}", "patch", "tags"), ("/api/jobs", "post", "kind"),
                                ("/api/folders", "post", "path")):
        schema = paths[path][method]["requestBody"]["content"]["application/json"]["schema"]
        resolved = _resolve(web_app.openapi(), schema)
        assert field in resolved["properties"], (path, resolved)


@pytest.mark.parametrize("which", ["web", "service"])
def test_every_documented_error_is_problem_json(which, web_app, service_home):
    app = web_app if which == "web" else create_service(Settings(home=service_home))
    for path, operations in app.openapi()["paths"].items():
        for method, operation in operations.items():
            for status, response in operation["responses"].items():
                if status.startswith(("4", "5")):
                    assert list(response["content"]) == [PROBLEM_JSON], (method, path, status)
                    assert {"type", "title", "status", "detail"} <= set(response["content"][PROBLEM_JSON]["schema"]["properties"])


def assert_problem(response, status: int, slug: str | None = None) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_JSON, response.headers
    body = response.json()
    assert body["status"] == status and isinstance(body["detail"], str) and body["detail"].strip()
    assert body["type"].startswith("/problems/") and body["type"].removeprefix("/problems/") in TITLES
    assert body["title"] == TITLES[body["type"].removeprefix("/problems/")]
    if slug is not None:
        assert body["type"] == f"/problems/{slug}", body
    assert "Traceback" not in response.text
    return body


# -- web app --------------------------------------------------------------------------------
def test_web_validation_errors_name_each_field(web):
    body = assert_problem(web.post("/api/jobs", json={"kind": "paint", "folder_id": "1"}), 422, "invalid-input")
    assert {tuple(e["loc"]) for e in body["errors"]} == {("body", "kind"), ("body", "folder_id")}
    assert "kind" in body["detail"] and body["instance"] == "/api/jobs"
    assert "errors" in assert_problem(web.patch("/api/memes/1", json={}), 422, "invalid-input")
    unknown = assert_problem(web.patch("/api/memes/1", json={"colour": "red"}), 422, "invalid-input")
    assert "colour: unknown field" in unknown["detail"]
    assert_problem(web.get("/api/search", params={"limit": "many"}), 422, "invalid-input")


def test_web_bodies_that_are_not_json_objects(web):
    for content in (b"{broken", b"[1, 2]", b'"text"', b""):
        body = assert_problem(web.post("/api/folders", content=content, headers={"content-type": "application/json"}), 422)
        assert body["detail"] == "the request body must be a JSON object", content
    not_utf8 = web.post("/api/folders", content=b'{"path": "\xff"}', headers={"content-type": "application/json"})
    assert "UTF-8" in assert_problem(not_utf8, 422, "invalid-input")["detail"]
    surrogate = web.post("/api/folders", content=b'{"path": "/x\\ud800"}', headers={"content-type": "application/json"})
    assert "invalid Unicode" in assert_problem(surrogate, 422, "invalid-input")["detail"]


def test_web_framework_errors(web):
    assert assert_problem(web.get("/api/no-such-thing"), 404, "not-found")["detail"] == "there is nothing at /api/no-such-thing"
    assert_problem(web.get("/api/memes/424242"), 404, "not-found")
    assert "DELETE" in assert_problem(web.delete("/api/jobs"), 405, "method-not-allowed")["detail"]
    assert_problem(web.get("/api/search?q=%ED%A0%80"), 422, "invalid-input")


def test_web_upload_too_large_is_413(web, web_app):
    huge = str(10**12)
    response = web.post("/api/uploads", content=b"x", headers={"content-type": "multipart/form-data; boundary=b",
                                                               "content-length": huge})
    assert_problem(response, 413, "too-large")


def test_web_refusals_of_the_security_layer(web_app):
    plain = TestClient(web_app, raise_server_exceptions=False)
    assert_problem(plain.post("/api/jobs", json={"kind": "index"}), 403, "forbidden")
    for _ in range(3):  # login_limits: 3 wrong tokens a minute
        plain.get("/api/jobs", headers={"Authorization": "Bearer wrong"})
    limited = plain.get("/api/jobs", headers={"Authorization": "Bearer wrong"})
    assert_problem(limited, 429, "rate-limited")
    assert int(limited.headers["retry-after"]) >= 1


def test_web_login_required_is_401(tmp_path):
    app = create_web(Settings(home=tmp_path / "locked", password="a long password"))
    assert_problem(TestClient(app).get("/api/jobs"), 401, "unauthorized")


def test_web_bug_is_500_without_traceback(web, web_app):
    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    web_app.state.core.store.get_meme = broken
    body = assert_problem(web.get("/api/memes/1"), 500, "internal")
    assert "secret internals" not in body["detail"]


# The read-only 503 (/problems/read-only) is checked on a real read-only data dir in tests/test_read_only.py.


def test_web_pages_keep_html_error_pages(web):
    page = web.get("/no-such-page", headers={"accept": "text/html"})
    assert page.status_code == 404 and page.headers["content-type"].startswith("text/html")
    assert "<html" in page.text.lower()


# -- ML service ------------------------------------------------------------------------------
def _png() -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (16, 16), "red").save(buffer, format="PNG")
    return buffer.getvalue()


def test_service_errors_are_problems(service):
    body = assert_problem(service.post("/v1/embed", json={"texts": "one"}), 422, "invalid-input")
    assert body["errors"][0]["loc"] == ["body", "texts"]
    assert_problem(service.post("/v1/embed", content=b"{bad", headers={"content-type": "application/json"}), 422, "invalid-input")
    assert_problem(service.post("/v1/ocr", files={"image": ("x.png", b"\x89PNG broken", "image/png")}), 422, "bad-image")
    assert_problem(service.post("/v1/caption", files={"image": ("x.png", _png(), "image/png")}, data={"model": "nope"}),
                   404, "not-found")
    assert_problem(service.post("/v1/caption", files={"image": ("x.png", _png(), "image/png")},
                                data={"model": "fake-broken"}), 500, "model-failed")
    assert_problem(service.get("/v1/nothing"), 404, "not-found")
    assert_problem(service.delete("/v1/embed"), 405, "method-not-allowed")
    assert_problem(service.post("/v1/ocr", files={"image": ("x.png", b"0" * 100_000, "image/png")}), 413, "too-large")
    assert_problem(service.get("/v1/models?x=%ED%A0%80"), 422, "invalid-input")


def test_service_token_refusal_is_a_problem(service_home):
    with TestClient(create_service(Settings(home=service_home, ml_token="s3cret-token"))) as client:
        response = client.get("/v1/models")
        assert_problem(response, 401, "unauthorized")
        assert response.headers["www-authenticate"] == "Bearer"


def test_service_busy_is_a_problem(service_home):
    from memesearch.service.limits import Busy

    app = create_service(Settings(home=service_home))

    @app.get("/v1/always-busy")
    def always_busy():
        raise Busy()

    with TestClient(app) as client:
        response = client.get("/v1/always-busy")
        assert_problem(response, 503, "busy")
        assert response.headers["retry-after"] == "1"


def test_service_bug_is_500_without_traceback(service_home):
    app = create_service(Settings(home=service_home))

    @app.get("/v1/bug")
    def bug():
        raise RuntimeError("secret internals")

    with TestClient(app, raise_server_exceptions=False) as client:
        body = assert_problem(client.get("/v1/bug"), 500, "internal")
        assert "secret internals" not in body["detail"]
