"""Model downloads and the no-results page in a real browser (Debian Chromium via Playwright),
against `memesearch serve` and a local hub on 127.0.0.1; desktop and a 390x844 phone.

Screenshots go to $MEMESEARCH_SCREENSHOTS (if set) for people to look at.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
from playwright.sync_api import expect

from tests.hub_server import FakeHub, private_models_dir
from tests.test_onboarding import BIG, HUB_MODELS, REVISION
from tests.web.conftest import copy_library
from tests.web.server import ServerProcess

expect.set_options(timeout=30_000)
PHONE = {"width": 390, "height": 844}
DESKTOP = {"width": 1280, "height": 900}
# A bigger file than the API tests use, served slowly, so progress can be watched and cancelled.
SLOW_FILES = {"onnx/model.onnx": BIG * 3, "tokenizer.json": b"{}"}


@pytest.fixture(scope="module")
def hub():
    served = FakeHub("org/hub-test", REVISION, SLOW_FILES, bytes_per_s=600_000)
    yield served
    served.close()


@pytest.fixture(scope="module")
def server(web_template, tmp_path_factory, hub):
    home = tmp_path_factory.mktemp("browser_onboarding") / "data"
    copy_library(web_template, home).close()
    private_models_dir(home)
    (home / "models.yml").write_text(HUB_MODELS)
    process = ServerProcess(home, HF_ENDPOINT=hub.url, HF_HUB_OFFLINE="0").wait_ready()
    yield process
    process.stop()


def open_page(browser, server, viewport):
    context = browser.new_context(base_url=server.url, viewport=viewport, color_scheme="light")
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error"
            and not message.text.startswith("Failed to load resource") else None)
    return context, page, problems


def right_edge(page, selector: str) -> float:
    """The rightmost pixel of the element or anything inside it (the shared top bar is not ours to test)."""
    return page.evaluate(
        "(selector) => { const root = document.querySelector(selector);"
        " return Math.max(...[root, ...root.querySelectorAll('*')].map((e) => e.getBoundingClientRect().right)); }",
        selector,
    )


def shot(page, name: str) -> None:
    folder = os.environ.get("MEMESEARCH_SCREENSHOTS")
    if folder:
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


def test_models_page_downloads_with_progress_cancel_and_resume(browser, server, hub):
    context, page, problems = open_page(browser, server, DESKTOP)
    try:
        page.goto("/models")
        # The describe form knows the selected model is not ready: one sentence and the download.
        page.select_option("#bulk-model", "hub-test")
        expect(page.locator("#model-notice")).to_be_visible()
        expect(page.locator("#model-notice-text")).to_have_text("The model hub-test is not downloaded yet.")
        expect(page.locator("#bulk-start")).to_be_disabled()
        row = page.locator("#model-hub-test")
        row.locator("[data-pull]").click()
        status = row.locator(".pull-status")
        expect(status).to_contain_text(" of 3.1 MB")
        expect(status).to_contain_text("%")
        expect(status).to_contain_text("left")
        shot(page, "models-downloading-desktop")
        row.locator("[data-pull-cancel]").click()
        expect(row.locator(".pull-error")).to_contain_text("Cancelled at")
        expect(row.locator("[data-pull]")).to_have_text("Resume download")
        shot(page, "models-cancelled-desktop")
        row.locator("[data-pull]").click()
        # Done: the page reloads and the model is ready to describe with.
        expect(page.locator("#model-hub-test")).to_contain_text("downloaded", timeout=60_000)
        expect(page.locator("#model-hub-test .pull-cell")).not_to_contain_text("Resume")
        ranges = [rng for path, rng in hub.gets() if path.endswith("model.onnx")]
        assert ranges[0] == "" and ranges[-1].startswith("bytes=")  # the second request resumed
        shot(page, "models-done-desktop")
    finally:
        context.close()
    assert problems == []


def test_models_page_on_a_phone(browser, server):
    context, page, problems = open_page(browser, server, PHONE)
    try:
        page.goto("/models")
        expect(page.locator("#model-smolvlm-256m [data-pull]")).to_be_visible()
        assert right_edge(page, "main table.models") <= PHONE["width"], "the models table is wider than the phone"
        shot(page, "models-phone")
    finally:
        context.close()
    assert problems == []


@pytest.mark.parametrize("viewport", [DESKTOP, PHONE], ids=["desktop", "phone"])
def test_no_results_page_suggests_what_to_try(browser, server, viewport):
    context, page, problems = open_page(browser, server, viewport)
    try:
        page.goto("/")
        page.fill("#q", "xyzzyqwv")
        box = page.locator("#no-results")
        expect(box).to_be_visible()
        expect(box).to_contain_text("No memes match “xyzzyqwv”")
        expect(box.locator(".suggestions a")).to_have_count(2)
        name = "desktop" if viewport is DESKTOP else "phone"
        shot(page, f"no-results-{name}")
        assert right_edge(page, "#no-results") <= viewport["width"]
        box.locator(".suggestions a").first.click()
        expect(page).to_have_url(re.compile(r"[?&]mode=(vector|keyword)"))
    finally:
        context.close()
    assert problems == []


def test_generate_with_a_missing_model_offers_the_download(browser, server):
    import httpx

    meme_id = httpx.get(f"{server.url}/api/search", params={"limit": 1}).json()["hits"][0]["id"]
    context, page, problems = open_page(browser, server, DESKTOP)
    try:
        page.goto(f"/memes/{meme_id}")
        page.select_option("#regenerate-model", "smolvlm-256m")
        page.locator("#regenerate-form button[type=submit]").click()
        status = page.locator("#regenerate-status")
        expect(status).to_contain_text("The model smolvlm-256m is not downloaded yet.")
        expect(page.locator("#regenerate-progress")).to_be_hidden()  # no bar that fills up on failure
        link = status.locator("a")
        expect(link).to_have_text("Download smolvlm-256m (about 651 MB)")
        shot(page, "meme-generate-not-downloaded")
        link.click()
        # The Models page starts that download; this hub has no such files: one sentence, details folded.
        row = page.locator("#model-smolvlm-256m")
        expect(row.locator(".pull-error")).to_be_visible()
        expect(row.locator(".pull-details")).to_be_visible()
        expect(row.locator(".pull-details pre")).to_be_hidden()  # collapsed until opened
        shot(page, "models-download-failed")
    finally:
        context.close()
    assert problems == []
