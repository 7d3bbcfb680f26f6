"""Template groups in the web app: JSON API through the app, pages in Chromium (desktop and phone)."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import expect

from tests.templates.conftest import indexed_template_library
from tests.web.server import ServerProcess

expect.set_options(timeout=30_000)


@pytest.fixture(scope="module")
def server(tmp_path_factory, shared_models_dir):
    root = tmp_path_factory.mktemp("templates-web")
    core, _ = indexed_template_library(root, shared_models_dir, templates=2, variants=3, distractors=2, seed=4)
    core.close()
    process = ServerProcess(root / "data").wait_ready()
    yield process
    process.stop()


@pytest.fixture(params=[(1280, 900), (390, 844)], ids=["desktop", "phone"])
def page(request, browser, server):
    context = browser.new_context(base_url=server.url, viewport=dict(zip(("width", "height"), request.param)))
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    opened.on("response", lambda response: problems.append(f"{response.status} {response.url}")
              if response.status >= 400 and not response.url.endswith("/favicon.ico") else None)
    yield opened
    context.close()
    assert problems == []


def groups(server) -> list[dict]:
    return httpx.get(f"{server.url}/api/templates").json()["groups"]


def test_api_lists_names_and_tags_groups(server):
    listed = groups(server)
    assert [g["size"] for g in listed] == [4, 4]
    group = listed[0]
    one = httpx.get(f"{server.url}/api/templates/{group['id']}").json()
    assert one["members"] == group["members"] and "suggested" in one
    assert httpx.get(f"{server.url}/api/templates/999999").status_code == 404
    # Writes need the CSRF token a page hands out (no token: refused).
    assert httpx.patch(f"{server.url}/api/templates/{group['id']}", json={"name": "x"}).status_code == 403
    with httpx.Client(base_url=server.url) as client:
        client.get("/templates")
        token = client.cookies["ms_csrf"]
        headers = {"X-CSRF-Token": token}
        named = client.patch(f"/api/templates/{group['id']}", json={"name": "  Two Buttons "}, headers=headers)
        assert named.status_code == 200 and named.json()["name"] == "Two Buttons"
        assert client.patch(f"/api/templates/{group['id']}", json={"name": "x" * 81}, headers=headers).status_code == 422
        tagged = client.post(f"/api/templates/{group['id']}/tags", json={"tags": ["two-buttons"]}, headers=headers)
        assert tagged.json() == {"tagged": 4}
    for member in group["members"]:
        assert "two-buttons" in httpx.get(f"{server.url}/api/memes/{member['id']}").json()["tags"]
    hits = httpx.get(f"{server.url}/api/search", params={"q": "two buttons", "mode": "keyword", "limit": 50}).json()
    assert {m["id"] for m in group["members"]} <= {h["id"] for h in hits["hits"]}


def test_templates_page_meme_strip_and_naming(page, server):
    page.goto("/templates")
    cards = page.locator("#template-groups .template-card")
    expect(cards).to_have_count(2)
    for image in page.locator("#template-groups img").all():  # every card picture really loads
        expect(image).to_have_js_property("complete", True)
        assert image.evaluate("img => img.naturalWidth") > 0
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    cards.first.locator("a").click()
    expect(page.locator("#template-members li")).to_have_count(4)
    # Name it through the form; the name shows and finds the memes.
    page.fill("#template-name", "Galaxy Brain")
    page.click("#template-name-form button")
    expect(page.locator("#template-title")).to_contain_text("Galaxy Brain")
    page.locator("#template-members a").first.click()
    strip = page.locator("#same-template")
    expect(strip).to_contain_text("Same template (3)")
    expect(strip.locator("img")).to_have_count(3)
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
