"""Sessions are server-side: logout ends one, a new password ends all, a plain restart keeps them."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.security.conftest import PASSWORD
from tests.security.helpers import browser, edit, log_in

pytestmark = pytest.mark.timeout(120)
NEW_PASSWORD = "a-different-password-0042"


def replay(app, cookies: dict[str, str]) -> TestClient:
    """Another client that only holds copies of the given cookies (a stolen or kept cookie)."""
    return TestClient(app, raise_server_exceptions=False, follow_redirects=False, cookies=cookies)


def session_cookies(client: TestClient) -> dict[str, str]:
    return {name: client.cookies[name] for name in ("ms_session", "ms_csrf")}


def test_logout_ends_the_session_on_the_server(library):
    app = library.start()
    client = browser(app)
    before_login = session_cookies(client)
    assert log_in(client).status_code == 303
    kept = session_cookies(client)
    assert kept["ms_session"] != before_login["ms_session"], "login must start a new session id (no fixation)"
    other = browser(app, ip="198.51.100.8")
    assert log_in(other).status_code == 303
    assert replay(app, kept).get("/api/tags").status_code == 200

    assert client.post("/logout", headers={"X-CSRF-Token": kept["ms_csrf"]}).status_code == 303
    copy = replay(app, kept)
    assert copy.get("/api/tags").status_code == 401
    assert copy.get("/").headers["location"].startswith("/login")
    assert edit(copy, library.meme_id, "after logout", **{"X-CSRF-Token": kept["ms_csrf"]}).status_code == 401
    assert other.get("/api/tags").status_code == 200, "logging out one browser leaves the others logged in"
    assert library.description() == ""


def test_a_restart_keeps_sessions_and_a_new_password_ends_them(library):
    client = browser(library.start())
    assert log_in(client).status_code == 303
    kept = session_cookies(client)

    same = library.start()  # restarted with the same password
    assert replay(same, kept).get("/api/tags").status_code == 200
    assert edit(replay(same, kept), library.meme_id, "still me").status_code == 200
    assert library.description() == "still me"

    changed = library.start(password=NEW_PASSWORD)
    assert replay(changed, kept).get("/api/tags").status_code == 401
    assert edit(replay(changed, kept), library.meme_id, "old cookie").status_code == 401
    assert library.description() == "still me"
    fresh = browser(changed)
    assert log_in(fresh, PASSWORD).status_code == 401
    assert log_in(fresh, NEW_PASSWORD).status_code == 303
    # Back to the old password: the sessions of before stay ended.
    assert replay(library.start(), kept).get("/api/tags").status_code == 401


def test_the_session_file_holds_no_usable_id_and_no_password(library):
    client = browser(library.start())
    assert log_in(client).status_code == 303
    signed = client.cookies["ms_session"]
    session_id = signed.split(".")[0]
    raw = b"".join(path.read_bytes() for path in library.home.glob("web-sessions.db*"))
    assert raw, "sessions are stored in the data dir"
    assert session_id.encode() not in raw and PASSWORD.encode() not in raw
    assert library.core.settings.sessions_path.name == "web-sessions.db"


def test_a_forged_or_tampered_session_cookie_opens_nothing(library):
    app = library.start()
    client = browser(app)
    log_in(client)
    signed = client.cookies["ms_session"]
    for forged in (signed[:-2] + "xx", "x" + signed, "anything", signed.split(".")[0]):
        assert replay(app, {"ms_session": forged}).get("/api/tags").status_code == 401, forged
