"""Wrong passwords and API tokens are throttled per client and overall: 429 + Retry-After."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from tests.reliability import tried
from tests.security.conftest import API_TOKEN, PASSWORD
from tests.security.helpers import browser, log_in
from tests.web.server import ServerProcess

pytestmark = pytest.mark.timeout(120)


def test_a_client_guessing_passwords_is_stopped_even_with_the_right_one(library):
    app = library.start()  # default tiers: 5/minute;20/hour;100/day per client
    attacker = browser(app, ip="203.0.113.9")
    answers = [log_in(attacker, f"guess-{n}").status_code for n in range(5)]
    assert answers == [401] * 5
    for guess in ("guess-6", PASSWORD):  # past the limit, the right password is not even compared
        refused = log_in(attacker, guess)
        assert refused.status_code == 429, guess
        assert 1 <= int(refused.headers["retry-after"]) <= 60
        assert "too many wrong passwords" in refused.text and 'name="password"' in refused.text  # the login page says why
        tried()
    assert attacker.get("/api/tags").status_code == 401  # the right password did not log it in
    # Bearer tokens are guesses too (the token defaults to the password): throttled the same way.
    for token in ("wrong", API_TOKEN):
        answer = attacker.get("/api/tags", headers={"Authorization": f"Bearer {token}"})
        assert answer.status_code == 429 and int(answer.headers["retry-after"]) >= 1, token
    # Another client is not punished for it.
    owner = browser(app, ip="198.51.100.20")
    assert log_in(owner).status_code == 303
    assert owner.get("/api/tags").status_code == 200


def test_wrong_api_tokens_count_as_guesses(library):
    app = library.start(login_limits="3/minute")
    script = browser(app, ip="203.0.113.10")
    answers = [script.get("/api/tags", headers={"Authorization": f"Bearer guess-{n}"}).status_code for n in range(4)]
    assert answers == [401, 401, 401, 429]
    assert log_in(script).status_code == 429  # the same client, the same count
    tried(5)


def test_the_wait_grows_with_each_tier_and_ends(library):
    app = library.start(login_limits="2 per 1 second;4 per 1 hour")
    client = browser(app, ip="203.0.113.11")
    assert [log_in(client, "bad").status_code for _ in range(2)] == [401, 401]
    first = log_in(client, PASSWORD)
    assert first.status_code == 429 and int(first.headers["retry-after"]) == 1
    time.sleep(1.2)  # the short window passes
    assert [log_in(client, "bad").status_code for _ in range(2)] == [401, 401]
    second = log_in(client, PASSWORD)
    assert second.status_code == 429 and int(second.headers["retry-after"]) > 3000  # now the hour tier
    tried(6)


def test_the_right_password_works_once_the_window_has_passed(library):
    app = library.start(login_limits="3 per 1 second")
    client = browser(app, ip="203.0.113.12")
    assert [log_in(client, "bad").status_code for _ in range(3)] == [401, 401, 401]
    assert log_in(client).status_code == 429
    time.sleep(1.2)
    assert log_in(client).status_code == 303
    assert client.get("/api/tags").status_code == 200
    # A successful login clears the client's own count: it may mistype again.
    assert [log_in(client, "bad").status_code for _ in range(3)] == [401, 401, 401]
    tried(8)


def test_many_clients_together_hit_the_global_cap(library):
    app = library.start(login_limits="100/minute", login_global_limits="6/minute")
    for n in range(6):
        assert log_in(browser(app, ip=f"203.0.113.{100 + n}"), "bad").status_code == 401
    newcomer = log_in(browser(app, ip="192.0.2.50"), PASSWORD)
    assert newcomer.status_code == 429 and int(newcomer.headers["retry-after"]) >= 1
    tried(7)


def test_behind_a_trusted_proxy_each_forwarded_client_is_counted_apart(library):
    app = library.start(login_limits="2/minute", trusted_proxies=["10.0.0.0/8"])
    proxy = browser(app, ip="10.0.0.2")
    for client in ("203.0.113.30", "203.0.113.31"):
        hop = {"X-Forwarded-For": client}
        assert [log_in(proxy, "bad", **hop).status_code for _ in range(3)] == [401, 401, 429], client
    # An untrusted peer cannot pose as a fresh client with the same header.
    direct = browser(app, ip="203.0.113.40")
    answers = [log_in(direct, "bad", **{"X-Forwarded-For": f"192.0.2.{n}"}).status_code for n in range(3)]
    assert answers == [401, 401, 429]
    tried(9)


def test_a_real_server_throttles_a_password_guessing_loop(library, tmp_path):
    """The reported case: a fast loop of wrong passwords against `memesearch serve` on 127.0.0.1,
    here fired from 8 threads at once so that no guess can slip past the count."""
    library.close()
    server = ServerProcess(library.home, MEMESEARCH_PASSWORD=PASSWORD, MEMESEARCH_API_TOKEN=API_TOKEN).wait_ready()
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            client.get("/login")
            csrf = client.cookies["ms_csrf"]

            def guess(n: int) -> int:
                return client.post("/login", data={"password": f"guess-{n}", "csrf_token": csrf}).status_code

            with ThreadPoolExecutor(8) as pool:
                statuses = list(pool.map(guess, range(40)))
            tried(40)
            assert statuses.count(401) == 5 and statuses.count(429) == 35, statuses
            last = client.post("/login", data={"password": PASSWORD, "csrf_token": csrf})
            assert last.status_code == 429 and int(last.headers["retry-after"]) >= 1
            assert "too many wrong passwords" in last.text
    finally:
        server.stop()
