"""Pages render, errors are friendly, and login / CSRF / bearer / headers protect the app."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from memesearch.web import create_app
from tests.web.conftest import copy_library, csrf_client


@pytest.fixture
def locked_core(web_template, tmp_path):
    core = copy_library(web_template, tmp_path / "locked", password="hunter2", api_token="tok-123")
    yield core
    core.close()


def test_every_page_renders(client, web_core):
    meme_id = web_core.store.meme_ids()[0]
    for url, marker in [("/", 'id="q"'), ("/?q=mordor&mode=keyword", "<mark>mordor</mark>"),
                        (f"/memes/{meme_id}", 'id="user-description"'), ("/upload", 'id="dropzone"'),
                        ("/folders", 'id="folder-form"'), ("/models", 'id="bulk-form"'), ("/login", 'name="password"')]:
        response = client.get(url)
        assert response.status_code == 200, url
        assert marker in response.text.replace("MORDOR", "mordor"), url
        assert response.headers["content-security-policy"].startswith("default-src 'self'")
        assert response.headers["x-frame-options"] == "DENY"


def test_search_fragments_and_pagination(client):
    first = client.get("/", params={"part": "results", "q": ""})
    assert first.status_code == 200 and "<html" not in first.text and first.text.count('class="hit"') == 12
    more = client.get("/", params={"part": "more", "offset": 10})
    assert more.text.count('class="hit"') == 2 and 'class="more"' not in more.text
    assert client.get("/", params={"mode": "bad"}).status_code == 422


def test_errors_are_friendly_pages_without_traces(client, web_core, monkeypatch):
    page = client.get("/memes/99999", headers={"accept": "text/html"})
    assert page.status_code == 404 and "no meme with id 99999" in page.text and "<html" in page.text
    assert client.get("/nowhere", headers={"accept": "text/html"}).status_code == 404

    def broken(*args, **kwargs):
        raise RuntimeError("secret internals")

    monkeypatch.setattr(web_core.store, "list_tag_details", broken)
    crashed = client.get("/", headers={"accept": "text/html"})
    assert crashed.status_code == 500
    assert "unexpected error" in crashed.text and "secret internals" not in crashed.text and "Traceback" not in crashed.text
    api = client.get("/api/tags")
    assert api.status_code == 500 and api.json()["detail"].startswith("an unexpected error")


def test_csrf_is_required_for_every_state_change(web_core):
    app = create_app(core=web_core)
    bare = TestClient(app)
    meme_id = web_core.store.meme_ids()[0]
    assert bare.patch(f"/api/memes/{meme_id}", json={"user_description": "x"}).status_code == 403
    bare.get("/")  # the cookie alone is not enough: the token must be sent back
    assert bare.patch(f"/api/memes/{meme_id}", json={"user_description": "x"}).status_code == 403
    wrong = bare.patch(f"/api/memes/{meme_id}", json={"user_description": "x"}, headers={"X-CSRF-Token": "guess"})
    assert wrong.status_code == 403 and "CSRF" in wrong.json()["detail"]
    assert bare.post("/api/folders", json={"path": "/tmp"}).status_code == 403
    assert bare.delete("/api/folders/1").status_code == 403
    assert web_core.store.get_meme(meme_id).user_description == ""
    token = bare.cookies["ms_csrf"]
    assert bare.patch(f"/api/memes/{meme_id}", json={"user_description": "x"}, headers={"X-CSRF-Token": token}).status_code == 200


def test_login_session_and_bearer_token(locked_core):
    app = create_app(core=locked_core)
    browser = csrf_client(app)
    page = browser.get("/", follow_redirects=False)
    assert page.status_code == 303 and page.headers["location"] == "/login?next=/"
    assert browser.get("/api/search?q=x").status_code == 401
    assert browser.get("/static/app.css").status_code == 200
    token = browser.cookies["ms_csrf"]
    wrong = browser.post("/login", data={"password": "nope", "csrf_token": token})
    assert wrong.status_code == 401 and "wrong password" in wrong.text
    no_csrf = TestClient(app).post("/login", data={"password": "hunter2"})
    assert no_csrf.status_code == 403
    ok = browser.post("/login", data={"password": "hunter2", "csrf_token": token, "next": "//evil.example"},
                      follow_redirects=False)
    assert ok.status_code == 303 and ok.headers["location"] == "/"
    assert browser.get("/api/search?q=mordor").status_code == 200
    assert browser.get("/").status_code == 200
    # Scripts use the bearer token; it needs no CSRF token and no cookie.
    script = TestClient(app)
    headers = {"Authorization": "Bearer tok-123"}
    assert script.get("/api/search?q=mordor", headers=headers).status_code == 200
    meme_id = locked_core.store.meme_ids()[0]
    assert script.patch(f"/api/memes/{meme_id}", json={"add_tags": ["api"]}, headers=headers).status_code == 200
    assert script.get("/api/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401
    # Logging in starts a new session, and with it a new CSRF token.
    assert browser.cookies["ms_csrf"] != token
    browser.headers["X-CSRF-Token"] = browser.cookies["ms_csrf"]
    assert browser.post("/logout").status_code == 200  # redirected to the login page
    assert browser.get("/api/jobs").status_code == 401


def test_serve_refuses_public_bind_without_password(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from memesearch.cli import app
    from memesearch.net import is_loopback

    monkeypatch.delenv("MEMESEARCH_PASSWORD", raising=False)
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "MEMESEARCH_PASSWORD" in result.output
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("example.org")
