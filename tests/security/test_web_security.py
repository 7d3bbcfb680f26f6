"""Login and CSRF on every state-changing route, and no file served from outside the library."""

from __future__ import annotations

import asyncio
import os
import re
from urllib.parse import unquote

import pytest
from fastapi.testclient import TestClient
from starlette.routing import Mount, Route

from memesearch.web import create_app
from tests.reliability import tried
from tests.security.conftest import API_TOKEN, PASSWORD

STATE_CHANGING = {"POST", "PUT", "PATCH", "DELETE"}
pytestmark = pytest.mark.timeout(120)


def _walk(routes, prefix: str = ""):
    """Every (method, path) of a route list. FastAPI >= 0.165 keeps included routers as
    ``_IncludedRouter`` entries (``original_router`` + ``include_context.prefix``)."""
    for route in routes:
        if isinstance(route, Route):
            for method in route.methods or ():
                yield method, prefix + route.path
        elif hasattr(route, "original_router"):
            yield from _walk(route.original_router.routes, prefix + route.include_context.prefix)
        elif hasattr(route, "routes") and not isinstance(route, Mount):
            yield from _walk(route.routes, prefix + getattr(route, "path", ""))


def state_changing_routes(app) -> list[tuple[str, str]]:
    found = {(m, p) for m, p in _walk(app.routes) if m in STATE_CHANGING}
    # Cross-check with the OpenAPI document: nothing it lists may be missed by the walk
    # (OpenAPI writes {name:path} as {name}).
    listed = {(m, re.sub(r"\{(\w+):[^}]*\}", r"{\1}", p)) for m, p in found}
    for path, operations in app.openapi()["paths"].items():
        for method in operations:
            if method.upper() in STATE_CHANGING:
                assert (method.upper(), path) in listed, (method, path)
    return sorted(found)


def concrete(path: str, meme_id: int, folder_id: int) -> str:
    values = {"meme_id": meme_id, "folder_id": folder_id, "run_id": 1, "model_id": "fake"}
    return re.sub(r"\{(\w+)(:[^}]*)?\}", lambda m: str(values.get(m.group(1), 1)), path)


def snapshot(core) -> tuple:
    store = core.store
    memes = store.get_memes(store.meme_ids(status=None))
    return (store.counts(), [(m.path, m.user_description, m.tags, m.status) for m in memes],
            [f.path for f in store.list_folders()], store.list_run_rows())


def logged_in_client(app) -> TestClient:
    client = TestClient(app, raise_server_exceptions=False, follow_redirects=False)
    client.get("/login")
    token = client.cookies["ms_csrf"]
    response = client.post("/login", data={"password": PASSWORD, "csrf_token": token})
    assert response.status_code in (302, 303) and "ms_session" in client.cookies, response.text
    return client


def test_every_state_changing_route_needs_login_and_csrf(locked):
    core, _, _ = locked
    app = create_app(core=core)
    routes = state_changing_routes(app)
    assert len(routes) >= 10 and ("PATCH", "/api/memes/{meme_id}") in routes and ("POST", "/api/uploads") in routes
    meme_id, folder_id = core.store.meme_ids()[0], core.store.list_folders()[0].id
    before = snapshot(core)
    anonymous = TestClient(app, raise_server_exceptions=False, follow_redirects=False)
    anonymous.get("/login")  # holds a CSRF cookie, so only the missing login can stop it
    anonymous.headers["X-CSRF-Token"] = anonymous.cookies["ms_csrf"]
    session = logged_in_client(app)  # logged in, but sends no CSRF token
    wrong_token = TestClient(app, raise_server_exceptions=False, follow_redirects=False,
                             headers={"Authorization": "Bearer not-the-token"})
    for method, path in routes:
        url = concrete(path, meme_id, folder_id)
        body = {"json": {"user_description": "pwned", "path": "/", "tags": ["pwned"]}}
        if path not in ("/login",):
            # A wrong token is refused, and after a few guesses throttled (429).
            for client, allowed in ((anonymous, {401, 403, 303}), (wrong_token, {401, 403, 303, 429})):
                response = client.request(method, url, **body)
                assert response.status_code in allowed, (method, url, response.status_code, response.text[:200])
                if response.status_code == 303:
                    assert response.headers["location"].startswith("/login")
        response = session.request(method, url, **body)
        assert response.status_code == 403, (method, url, "logged in without CSRF", response.status_code)
        tried(3 if path != "/login" else 1)
    assert snapshot(core) == before, "no refused request changed anything"


def test_the_session_with_csrf_and_the_bearer_token_are_accepted(locked):
    """The refusals above are not blanket refusals: the right credentials work."""
    core, _, _ = locked
    app = create_app(core=core)
    meme_id = core.store.meme_ids()[0]
    session = logged_in_client(app)
    session.headers["X-CSRF-Token"] = session.cookies["ms_csrf"]
    assert session.patch(f"/api/memes/{meme_id}", json={"user_description": "by session"}).status_code == 200
    bearer = TestClient(app, headers={"Authorization": f"Bearer {API_TOKEN}"})
    assert bearer.patch(f"/api/memes/{meme_id}", json={"user_description": "by token"}).status_code == 200
    assert core.store.get_meme(meme_id).user_description == "by token"


def raw_get(app, raw_path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    """GET with the path exactly as given (clients normalise '..'; an attacker's does not)."""
    path, _, query = raw_path.partition("?")
    scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "GET",
             "scheme": "http", "path": unquote(path), "raw_path": path.encode(), "query_string": query.encode(),
             "root_path": "", "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
             "client": ("127.0.0.1", 5000), "server": ("testserver", 80)}
    status, chunks, sent = 0, [], []

    async def receive():
        if not sent:
            sent.append(True)
            return {"type": "http.request", "body": b"", "more_body": False}
        await asyncio.Event().wait()  # the client stays connected until the response is done

    async def send(message):
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]
        elif message["type"] == "http.response.body":
            chunks.append(message.get("body", b""))

    asyncio.run(app(scope, receive, send))
    return status, b"".join(chunks)


def test_no_route_serves_files_outside_the_library(locked):
    core, folder, outside = locked
    app = create_app(core=core)
    secret = outside / "secret.txt"
    key = core.settings.secret_key_path.read_bytes() if core.settings.secret_key_path.exists() else b"\x00nokey"
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    attempts = [
        "/static/../../../../../../etc/passwd", "/static/%2e%2e/%2e%2e/%2e%2e/%2e%2e/etc/passwd",
        "/static/..%2f..%2f..%2f..%2fetc%2fpasswd", "/static//etc/passwd", f"/static/{secret}",
        f"/static/..%2f..%2f..%2f..%2f..%2f..%2f{str(secret).lstrip('/')}", "/static/../web-secret.key",
        "/files/../../../../etc/passwd", "/files/%2e%2e/%2e%2e/etc/passwd", f"/files/{secret}",
        "/files/1/image/../../../../../etc/passwd", "/files/-1/image", "/files/1%2f..%2f..%2fimage",
        f"/api/memes/1?path={secret}", f"/?q=folder:{outside}", "/api/../../../etc/passwd",
        f"/files/1/download?path={secret}", "/files/99999999999999999999999/image",
    ]
    for raw in attempts:
        status, body = raw_get(app, raw, auth)
        assert b"root:x:0:0" not in body and b"TOP-SECRET" not in body and key not in body, raw
        assert status < 500, (raw, status)
        tried()


def test_a_meme_swapped_for_a_link_to_outside_is_not_served(locked):
    core, folder, outside = locked
    app = create_app(core=core)
    client = TestClient(app, headers={"Authorization": f"Bearer {API_TOKEN}"}, raise_server_exceptions=False)
    meme = core.store.get_meme(core.store.meme_ids()[0])
    assert client.get(f"/files/{meme.id}/image").status_code == 200
    os.unlink(meme.path)
    os.symlink(outside / "secret.txt", meme.path)  # swapped after indexing
    for kind in ("image", "download", "thumb"):
        response = client.get(f"/files/{meme.id}/{kind}")
        assert response.status_code == 404 and b"TOP-SECRET" not in response.content, kind


def test_a_meme_swapped_for_a_link_into_the_data_dir_does_not_leak_the_secret_key(locked):
    core, folder, outside = locked
    app = create_app(core=core)
    client = TestClient(app, headers={"Authorization": f"Bearer {API_TOKEN}"}, raise_server_exceptions=False)
    client.get("/login")  # the signing key exists once the app has served a request
    key_path = core.settings.secret_key_path
    meme = core.store.get_meme(core.store.meme_ids()[1])
    os.unlink(meme.path)
    os.symlink(key_path, meme.path)
    response = client.get(f"/files/{meme.id}/download")
    assert key_path.read_bytes() not in response.content and response.status_code == 404
