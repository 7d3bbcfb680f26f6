"""CSRF tokens are bound to the session, cross-site requests are refused by Origin/Referer,
and cookies are Secure on https (X-Forwarded-Proto believed only from trusted proxies)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from tests.reliability import tried
from tests.security.conftest import API_TOKEN
from tests.security.helpers import browser, edit, log_in

pytestmark = pytest.mark.timeout(120)


def logged_in(app, **kwargs) -> TestClient:
    client = browser(app, **kwargs)
    assert log_in(client).status_code == 303
    return client


def test_a_csrf_cookie_planted_by_another_site_is_useless(library):
    app = library.start()
    victim = logged_in(app)
    # A page on another port of the same host can set cookies for this one (cookies ignore ports).
    victim.cookies.delete("ms_csrf")
    victim.cookies.set("ms_csrf", "attacker-chosen", domain="testserver.local", path="/")
    for token in ("attacker-chosen", ""):
        assert edit(victim, library.meme_id, "pwned", **{"X-CSRF-Token": token}).status_code == 403
    # The token of another session (the attacker's own login) does not fit the victim's session.
    attacker = logged_in(app, ip="203.0.113.5")
    assert edit(victim, library.meme_id, "pwned", **{"X-CSRF-Token": attacker.cookies["ms_csrf"]}).status_code == 403
    assert library.description() == ""
    tried(3)


def test_the_token_of_before_login_does_not_work_after_it(library):
    app = library.start()
    client = browser(app)
    before = client.cookies["ms_csrf"]
    log_in(client)
    assert edit(client, library.meme_id, "x", **{"X-CSRF-Token": before}).status_code == 403
    assert edit(client, library.meme_id, "mine").status_code == 200  # the page's current token
    assert library.description() == "mine"


FOREIGN = [
    {"Origin": "http://evil.example"},
    {"Origin": "http://testserver:8001"},  # another port of the same host
    {"Origin": "https://testserver"},  # another scheme
    {"Origin": "null"},  # sandboxed frames, data: URLs
    {"Referer": "http://evil.example/page"},
    {"Referer": "http://testserver:9000/"},
    {"Origin": "http://evil.example", "Referer": "http://testserver/"},  # Origin wins
]


def test_cross_site_requests_are_refused_even_with_the_right_token(library):
    app = library.start()
    client = logged_in(app)
    for headers in FOREIGN:
        answer = edit(client, library.meme_id, "pwned", **headers)
        assert answer.status_code == 403 and "cross-site" in answer.json()["detail"], headers
        tried()
    # Form posts too: a logout (or a rescan) triggered from another site is refused.
    logout = client.post("/logout", data={"csrf_token": client.cookies["ms_csrf"]}, headers={"Origin": "http://evil.example"})
    assert logout.status_code == 403 and client.get("/api/tags").status_code == 200
    assert library.description() == ""
    for headers in ({"Origin": "http://testserver"}, {"Origin": "http://TESTSERVER:80"},
                    {"Referer": "http://testserver/memes/1"}, {}):
        assert edit(client, library.meme_id, "same site", **headers).status_code == 200, headers
    assert library.description() == "same site"


def test_a_cross_site_login_form_is_refused(library):
    app = library.start()
    client = browser(app)
    assert log_in(client, Origin="http://127.0.0.1:9999").status_code == 403
    assert client.get("/api/tags").status_code == 401


def test_bearer_clients_need_no_csrf_and_no_origin(library):
    app = library.start()
    script = TestClient(app, headers={"Authorization": f"Bearer {API_TOKEN}"}, raise_server_exceptions=False)
    answer = script.patch(f"/api/memes/{library.meme_id}", json={"user_description": "by script"},
                          headers={"Origin": "http://elsewhere.example"})
    assert answer.status_code == 200 and library.description() == "by script"


def test_without_a_password_the_csrf_token_is_still_bound_to_a_server_issued_id(library):
    app = library.start(password="")
    client = browser(app)
    assert edit(client, library.meme_id, "local").status_code == 200
    planted = TestClient(app, raise_server_exceptions=False, cookies={"ms_csrf": "x", "ms_session": "forged"})
    assert edit(planted, library.meme_id, "pwned", **{"X-CSRF-Token": "x"}).status_code == 403
    assert edit(client, library.meme_id, "pwned", Origin="http://127.0.0.1:8080").status_code == 403
    assert library.description() == "local"


def set_cookies(response) -> dict[str, str]:
    return {header.split("=", 1)[0]: header for header in response.headers.get_list("set-cookie")}


def test_cookies_are_secure_on_https_only(library):
    app = library.start(trusted_proxies=["10.1.2.3", "fd00::/8"])
    cases = [  # (peer, base url, headers, secure?)
        ("198.51.100.7", "https://testserver", {}, True),
        ("198.51.100.7", "http://testserver", {}, False),
        ("198.51.100.7", "http://testserver", {"X-Forwarded-Proto": "https"}, False),  # untrusted peer
        ("10.1.2.3", "http://testserver", {"X-Forwarded-Proto": "https"}, True),
        ("fd00::5", "http://testserver", {"X-Forwarded-Proto": "https"}, True),
        ("10.1.2.3", "http://testserver", {}, False),
    ]
    for peer, base_url, headers, secure in cases:
        client = TestClient(app, base_url=base_url, client=(peer, 1234), follow_redirects=False)
        page = client.get("/login", headers=headers)
        cookies = set_cookies(page)
        assert {"ms_session", "ms_csrf"} <= set(cookies)
        token = page.text.split('name="csrf_token" value="', 1)[1].split('"', 1)[0]
        client.cookies.clear()  # the jar keeps Secure cookies from http: send the session by hand
        session_id = cookies["ms_session"].split("=", 1)[1].split(";")[0]
        logged = client.post("/login", data={"password": library.core.settings.password, "csrf_token": token},
                             headers=headers | {"Cookie": f"ms_session={session_id}"})
        assert logged.status_code == 303, (peer, base_url, headers, logged.text[:200])
        session = set_cookies(logged)["ms_session"].lower()
        assert ("; secure" in session) is secure and "httponly" in session and "samesite=lax" in session, (peer, headers)
        assert ("; secure" in cookies["ms_csrf"].lower()) is secure
        tried()


def test_behind_a_trusted_proxy_the_public_origin_counts(library):
    app = library.start(trusted_proxies=["10.0.0.0/8"])
    proxied = {"X-Forwarded-Proto": "https", "X-Forwarded-Host": "memes.example.org"}
    via_proxy = logged_in(app, ip="10.0.0.2")
    assert edit(via_proxy, library.meme_id, "ok", Origin="https://memes.example.org", **proxied).status_code == 200
    assert edit(via_proxy, library.meme_id, "x", Origin="http://memes.example.org", **proxied).status_code == 403
    assert edit(via_proxy, library.meme_id, "x", Origin="https://testserver", **proxied).status_code == 403
    # The same forwarded headers from anyone else are ignored: their origin is the Host they reached.
    direct = logged_in(app, ip="203.0.113.3")
    assert edit(direct, library.meme_id, "x", Origin="https://memes.example.org", **proxied).status_code == 403
    assert edit(direct, library.meme_id, "direct", Origin="http://testserver", **proxied).status_code == 200
    assert library.description() == "direct"
