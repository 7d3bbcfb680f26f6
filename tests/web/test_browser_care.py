"""Library care in a real browser (Debian Chromium via Playwright): the Tags page, bulk removal from
the search grid and the Settings page, at desktop and phone sizes."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from tests.web.conftest import copy_library
from tests.web.server import ServerProcess

expect.set_options(timeout=30_000)
SIZES = {"desktop": {"width": 1280, "height": 860}, "phone": {"width": 390, "height": 844}}


@pytest.fixture(scope="module")
def server(web_template, tmp_path_factory):
    home = tmp_path_factory.mktemp("browser-care") / "data"
    copy_library(web_template, home).close()
    # A user's server: the developer-only `fake` model hidden (tests/conftest.py sets MEMESEARCH_DEV=1).
    process = ServerProcess(home, MEMESEARCH_DEV="0").wait_ready()
    yield process
    process.stop()


@pytest.fixture(params=sorted(SIZES))
def page(request, browser, server):
    """A fresh tab at desktop or phone size; script errors and CSP violations fail the test."""
    context = browser.new_context(base_url=server.url, viewport=SIZES[request.param], has_touch=request.param == "phone")
    opened = context.new_page()
    opened.size_name = request.param
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    opened.on("console", lambda message: problems.append(message.text) if message.type == "error"
              and not message.text.startswith("Failed to load resource") else None)
    yield opened
    context.close()
    assert problems == []


@pytest.fixture
def api(server):
    """The JSON API as a script would use it (cookie + CSRF header)."""
    with httpx.Client(base_url=server.url) as client:
        client.get("/healthz")
        client.headers["X-CSRF-Token"] = client.cookies["ms_csrf"]
        yield client


def fits(page, selector: str) -> None:
    """The element is not wider than the screen (no sideways scrolling on a phone)."""
    width = page.evaluate(f"document.querySelector('{selector}').getBoundingClientRect().right")
    assert width <= page.viewport_size["width"] + 1, (selector, width)


def test_tags_page_rename_merge_colour_delete_clean(page, api):
    suffix = page.size_name
    ids = [h["id"] for h in api.get("/api/search", params={"limit": 3}).json()["hits"]]
    api.patch(f"/api/memes/{ids[0]}", json={"add_tags": [f"old-{suffix}", f"dup-{suffix}"]})
    api.patch(f"/api/memes/{ids[1]}", json={"add_tags": [f"keep-{suffix}", f"gone-{suffix}"]})
    api.patch(f"/api/memes/{ids[1]}", json={"remove_tags": [f"gone-{suffix}"]})  # now unused

    page.goto("/tags")
    fits(page, ".tags-page")
    row = page.locator(f'.tag-row[data-tag="old-{suffix}"]')
    row.locator('input[name="new_name"]').fill(f"new-{suffix}")
    row.locator(".tag-rename button").click()
    expect(page.locator("#tags-notice")).to_contain_text(f"Renamed #old-{suffix} to #new-{suffix}")
    # Rename onto an existing tag merges.
    row = page.locator(f'.tag-row[data-tag="dup-{suffix}"]')
    row.locator('input[name="new_name"]').fill(f"keep-{suffix}")
    row.locator(".tag-rename button").click()
    expect(page.locator("#tags-notice")).to_contain_text("Merged")
    expect(page.locator(f'.tag-row[data-tag="keep-{suffix}"] .tag-count')).to_have_text("2 memes")
    # Colour: choosing one submits at once; the chip shows it here and on the search page.
    page.locator(f'.tag-row[data-tag="keep-{suffix}"] select').select_option("purple")
    expect(page.locator(f'.tag-row[data-tag="keep-{suffix}"] .tag')).to_have_attribute("data-color", "purple")
    page.goto("/")
    expect(page.locator(f'.chip[data-color="purple"] input[value="keep-{suffix}"]')).to_have_count(1)
    expect(page.locator(f'.chip input[value="gone-{suffix}"]')).to_have_count(0)  # unused: no filter chip
    # Delete asks first; cancelling keeps the tag.
    page.goto("/tags")
    delete = page.locator(f'.tag-row[data-tag="new-{suffix}"] button.danger')
    delete.click()
    expect(page.locator("#confirm-dialog")).to_be_visible()
    page.locator('#confirm-dialog button[value="cancel"]').click()
    expect(page.locator(f'.tag-row[data-tag="new-{suffix}"]')).to_have_count(1)
    delete.click()
    page.locator('#confirm-dialog button[value="ok"]').click()
    expect(page.locator("#tags-notice")).to_contain_text(f"Deleted #new-{suffix} from 1 meme")
    expect(page.locator(f'.tag-row[data-tag="new-{suffix}"]')).to_have_count(0)
    # Clean unused tags.
    expect(page.locator(f'.tag-row.unused[data-tag="gone-{suffix}"]')).to_have_count(1)
    page.locator("#clean-unused").click()
    page.locator('#confirm-dialog button[value="ok"]').click()
    expect(page.locator("#tags-notice")).to_contain_text("unused tag")
    expect(page.locator(".tag-row.unused")).to_have_count(0)
    # A name that is too long is refused with the reason, on the page.
    row = page.locator(f'.tag-row[data-tag="keep-{suffix}"]')
    row.locator('input[name="new_name"]').fill("x" * 55)
    row.locator(".tag-rename button").click()
    expect(page.locator("#tags-error")).to_contain_text("too long")
    names = {t["name"] for t in api.get("/api/tag-details").json()["tags"]}
    assert f"keep-{suffix}" in names and f"gone-{suffix}" not in names and f"new-{suffix}" not in names


def test_select_mode_bulk_remove(page, api):
    hits = api.get("/api/search", params={"limit": 100}).json()["hits"]
    page.goto("/")
    expect(page.locator(".hit").first).to_be_visible()
    page.locator("#select-mode").click()
    expect(page.locator("#select-bar")).to_be_visible()
    fits(page, "#select-bar")
    first, second = page.locator(".hit").nth(0), page.locator(".hit").nth(1)
    chosen = [first.get_attribute("data-id"), second.get_attribute("data-id")]
    first.locator(".thumb").click()  # picks instead of opening
    second.click()
    assert "/memes/" not in page.url
    expect(page.locator("#select-count")).to_have_text("2 selected")
    expect(page.locator(".hit.picked")).to_have_count(2)
    page.locator("#remove-selected").click()
    expect(page.locator("#confirm-dialog")).to_contain_text("Remove 2 memes from the library")
    page.locator('#confirm-dialog button[value="ok"]').click()
    expect(page.locator("#toast")).to_contain_text("Removed 2 memes")
    for meme_id in chosen:
        expect(page.locator(f'.hit[data-id="{meme_id}"]')).to_have_count(0)
        assert api.get(f"/api/memes/{meme_id}").status_code == 404
    assert len(api.get("/api/search", params={"limit": 100}).json()["hits"]) == len(hits) - 2
    page.locator("#select-done").click()
    expect(page.locator("#select-bar")).to_be_hidden()
    page.locator(".hit").first.locator(".thumb").click()  # out of select mode, a click opens the meme again
    expect(page).to_have_url(re.compile(r"/memes/\d+$"))


def test_meme_page_remove_button(page, api):
    meme_id = api.get("/api/search", params={"limit": 1}).json()["hits"][0]["id"]
    page.goto(f"/memes/{meme_id}")
    page.locator("#remove-meme summary").click()
    expect(page.locator("#remove-meme")).to_contain_text("stays on your disk")
    page.locator("#remove-meme-confirm").click()
    expect(page.locator("#page-notice")).to_contain_text("Removed")
    assert api.get(f"/api/memes/{meme_id}").status_code == 404


def test_settings_page(page, api):
    page.goto("/settings")
    fits(page, ".settings-page")
    options = page.locator("#caption-model option").all_text_contents()
    assert "openai" in options and "fake" not in options
    page.locator("#caption-model").select_option("openai")
    page.locator("#base-url").fill("http://localhost:11434/v1")
    page.locator("#api-model").fill("llava")
    page.locator("#api-key").fill("sk-browser-secret")
    page.locator("#save-settings").click()
    expect(page.locator("#settings-notice")).to_have_text("Settings saved")
    expect(page.locator("#key-state")).to_contain_text("A key is set")
    expect(page.locator("#api-key")).to_have_value("")
    assert "sk-browser-secret" not in page.content()
    expect(page.locator("#base-url")).to_have_value("http://localhost:11434/v1")
    assert api.get("/api/settings").json()["openai"] == {"base_url": "http://localhost:11434/v1", "model": "llava",
                                                         "api_key_set": True}
    # Saving again with an empty key field keeps the key.
    page.locator("#api-model").fill("llava:13b")
    page.locator("#save-settings").click()
    expect(page.locator("#key-state")).to_contain_text("A key is set")
    # A URL that is not http(s) is refused, with what was typed kept.
    page.locator("#base-url").fill("ftp://example.com/v1")
    page.locator("#save-settings").click()
    expect(page.locator("#settings-error")).to_contain_text("http:// or https://")
    expect(page.locator("#base-url")).to_have_value("ftp://example.com/v1")
    # Remove the key (asks first).
    page.goto("/settings")
    page.locator("#remove-key").click()
    page.locator('#confirm-dialog button[value="ok"]').click()
    expect(page.locator("#settings-notice")).to_have_text("API key removed")
    expect(page.locator("#key-state")).to_contain_text("No key set")
    assert api.get("/api/settings").json()["openai"]["api_key_set"] is False


def test_uploading_a_meme_we_have_links_to_it(page, api):
    hit = api.get("/api/search", params={"limit": 1}).json()["hits"][0]
    page.goto("/upload")
    page.set_input_files("#file-picker", files=[{"name": "again.png", "mimeType": "image/png",
                                                 "buffer": Path(hit["path"]).read_bytes()}])
    row = page.locator(".upload-row.duplicate")
    expect(row).to_contain_text("already in your library")
    expect(row.locator("a")).to_have_attribute("href", f"/memes/{hit['id']}")
    expect(page.locator("#upload-summary")).to_have_text("Nothing new was uploaded.")
