"""From first run to first described meme, in a real browser (Debian Chromium), at desktop and phone sizes.

The quick start's demo library shows every image; every page fits a 390 px phone with the
navigation folded into a menu; live panels keep what the user opened; a bulk run asks first
and stays visible in the header across reloads; upload progress only goes forward; an empty
library welcomes the user; the search model is warm before the first query.
"""

from __future__ import annotations

import base64
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from memesearch.config import Settings
from memesearch.library.samples import render_sample_memes
from tests.web.conftest import copy_library
from tests.web.server import ServerProcess

expect.set_options(timeout=30_000)
REPO = Path(__file__).resolve().parents[2]
VIEWPORTS = {"desktop": {"width": 1280, "height": 860}, "phone": {"width": 390, "height": 844}}
DEMO_COUNT = 24  # `memesearch demo`'s default, and one full first page of results


def link_models(home: Path, shared_models_dir: Path) -> None:
    """Reuse the session's built MiniLM (as tests/conftest.py's make_core does)."""
    target = Settings(home=home).models_dir
    target.parent.mkdir(parents=True, exist_ok=True)
    target.symlink_to(shared_models_dir, target_is_directory=True)


@pytest.fixture(scope="module")
def demo_server(tmp_path_factory, shared_models_dir, web_template):
    """`memesearch demo` (the quick start: samples rendered inside the data dir), then `memesearch serve`."""
    home = tmp_path_factory.mktemp("demo") / "data"
    home.mkdir()
    link_models(home, shared_models_dir)
    subprocess.run([sys.executable, "-m", "memesearch", "--data-dir", str(home), "demo", "--query", "cat"],
                   check=True, capture_output=True, env=_env())
    process = ServerProcess(home).wait_ready()
    yield process
    process.stop()


@pytest.fixture(scope="module")
def empty_server(tmp_path_factory, shared_models_dir, web_template):
    home = tmp_path_factory.mktemp("empty") / "data"
    home.mkdir()
    link_models(home, shared_models_dir)
    process = ServerProcess(home).wait_ready()
    yield process
    process.stop()


def _env() -> dict:
    import os

    return {**os.environ, "MEMESEARCH_THREADS": "1", "HF_HUB_OFFLINE": "1"}


@contextmanager
def open_page(browser, server, size: str = "desktop", theme: str = "light"):
    """A fresh tab at ``size``; any script error or CSP violation on it fails the test."""
    context = browser.new_context(base_url=server.url, color_scheme=theme, viewport=VIEWPORTS[size])
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    page = context.new_page()
    problems: list[str] = []
    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    page.on("console", lambda message: problems.append(message.text) if message.type == "error"
            and not message.text.startswith("Failed to load resource") else None)
    try:
        yield page
    finally:
        context.close()
    assert problems == []


def assert_no_sideways_scroll(page) -> None:
    width, viewport = page.evaluate("[document.documentElement.scrollWidth, innerWidth]")
    assert width <= viewport, f"{page.url}: {width} px wide in a {viewport} px window"


def first_meme_id(server) -> int:
    return httpx.get(f"{server.url}/api/search", params={"limit": 1}).json()["hits"][0]["id"]


# -- the quick start shows pictures ------------------------------------------------------


@pytest.mark.parametrize("size", VIEWPORTS)
def test_every_image_of_the_demo_first_page_loads(browser, demo_server, size):
    with open_page(browser, demo_server, size) as page:
        page.goto("/")
        images = page.locator(".hit img")
        expect(images).to_have_count(DEMO_COUNT)
        for index in range(DEMO_COUNT):  # thumbnails load lazily: bring each into view
            image = images.nth(index)
            image.scroll_into_view_if_needed()
            page.wait_for_function("(img) => img.complete && img.naturalWidth > 0", arg=image.element_handle())
        # The original (meme page) loads too, and copying it works.
        page.locator(".hit .hit-title").first.click()
        page.wait_for_function("() => document.querySelector('#full-image').naturalWidth > 0")
        page.locator("[data-copy]").click()
        expect(page.locator("#toast")).to_have_text("Image copied")


# -- the layout fits a phone --------------------------------------------------------------


def _pages(server) -> list[str]:
    meme_id = first_meme_id(server)
    return ["/", "/?q=cat", f"/memes/{meme_id}", "/upload", "/templates", "/folders", "/models", "/tags", "/settings", "/memes/99999999"]


def test_every_page_fits_a_phone_and_the_navigation_folds_into_a_menu(browser, demo_server):
    with open_page(browser, demo_server, "phone") as page:
        for path in _pages(demo_server):
            page.goto(path)
            page.wait_for_load_state("networkidle")
            assert_no_sideways_scroll(page)
            nav = page.locator("#main-nav")
            expect(nav.get_by_role("link", name="Models")).to_be_hidden()
            for control in ("#menu-toggle", "#theme-toggle"):
                box = page.locator(control).bounding_box()
                assert box and box["x"] >= 0 and box["x"] + box["width"] <= 390, f"{path}: {control} at {box}"
            page.click("#menu-toggle")
            expect(page.locator("#menu-toggle")).to_have_attribute("aria-expanded", "true")
            for name in ("Search", "Upload", "Templates", "Folders", "Models", "Tags", "Settings"):
                link = nav.get_by_role("link", name=name)
                expect(link).to_be_visible()
                box = link.bounding_box()
                assert box["x"] + box["width"] <= 390
            assert_no_sideways_scroll(page)
        page.click("#menu-toggle")
        expect(nav.get_by_role("link", name="Models")).to_be_hidden()
        # The menu works: open it and go to the models page.
        page.click("#menu-toggle")
        page.locator("#main-nav").get_by_role("link", name="Models").click()
        expect(page).to_have_url(f"{demo_server.url}/models")


def test_every_page_keeps_its_navigation_bar_on_a_desktop(browser, demo_server):
    with open_page(browser, demo_server, "desktop", theme="dark") as page:
        for path in _pages(demo_server):
            page.goto(path)
            expect(page.locator("#menu-toggle")).to_be_hidden()
            expect(page.locator("#main-nav").get_by_role("link", name="Models")).to_be_visible()
            assert_no_sideways_scroll(page)


def _emoji_like(text: str) -> list[str]:
    """Pictographs that need an emoji or symbol font: arrows/technical/shapes/dingbats and the emoji planes."""
    return sorted({c for c in text if 0x2190 <= ord(c) <= 0x2BFF or ord(c) >= 0x1F000 or ord(c) == 0xFE0F})


def test_templates_and_scripts_use_svg_icons_not_emoji():
    web = REPO / "memesearch" / "web"
    files = list((web / "templates").glob("*.html")) + list((web / "static").glob("*.js"))
    found = {f.name: _emoji_like(f.read_text(encoding="utf-8")) for f in files if f.name != "htmx.min.js"}
    assert {name: chars for name, chars in found.items() if chars} == {}
    assert "<svg" in (web / "templates" / "_icons.html").read_text()


def test_the_icons_render_as_svg_in_the_browser(browser, demo_server):
    with open_page(browser, demo_server, "phone") as page:
        page.goto("/")
        for control in ("#menu-toggle", "#theme-toggle", "button[data-view=grid]", "button[data-view=list]"):
            box = page.locator(f"{control} svg").bounding_box()
            assert box and box["width"] >= 12 and box["height"] >= 12, control


# -- live panels keep the user's place ------------------------------------------------------


@pytest.mark.parametrize("size", VIEWPORTS)
def test_an_opened_error_list_stays_open_while_the_folder_list_refreshes(browser, demo_server, tmp_path, size):
    folder = tmp_path / f"mixed-{size}"
    render_sample_memes(folder, count=1, seed=61)
    (folder / "broken.png").write_bytes(b"this is not an image")
    with httpx.Client(base_url=demo_server.url) as api:
        api.get("/healthz")
        response = api.post("/api/folders", json={"path": str(folder)}, headers={"X-CSRF-Token": api.cookies["ms_csrf"]})
        assert response.status_code == 200, response.text
    with open_page(browser, demo_server, size) as page:
        page.goto("/folders")
        card = page.locator(f'.folder[data-path="{folder}"]')
        details = card.locator("details.scan-errors")
        expect(details).to_contain_text("1 file(s) could not be indexed", timeout=60_000)
        details.locator("summary").click()
        expect(details).to_have_attribute("open", "")
        # Three refreshes of the list (every 2 s); the last scan's "N s ago" changes, so each one swaps.
        page.evaluate("""() => new Promise((resolve) => {
            let swaps = 0;
            document.body.addEventListener("htmx:afterSettle", () => { if (++swaps === 3) resolve(); });
        })""")
        expect(details).to_have_attribute("open", "")
        expect(details).to_contain_text("broken.png")
        assert_no_sideways_scroll(page)


@pytest.fixture
def idle_server(web_template, tmp_path):
    """A library served with no job worker: a started run stays queued until it is cancelled."""
    home = tmp_path / "data"
    copy_library(web_template, home).close()
    process = ServerProcess(home, "--workers", "0").wait_ready()
    yield process
    process.stop()


@pytest.mark.parametrize("size", VIEWPORTS)
def test_a_bulk_run_asks_first_and_shows_in_the_header_across_reloads(browser, idle_server, size):
    with open_page(browser, idle_server, size) as page:
        page.goto("/models")
        page.select_option("#bulk-model", "fake")
        page.click("#bulk-start")
        dialog = page.locator("#bulk-confirm")
        expect(dialog).to_be_visible()
        expect(page.locator("#bulk-estimate")).to_contain_text("12 memes, about less than a minute with fake")
        page.click("#bulk-confirm-cancel")  # "not now" starts nothing
        expect(dialog).to_be_hidden()
        assert httpx.get(f"{idle_server.url}/api/jobs").json()["runs"] == []
        page.click("#bulk-start")
        page.click("#bulk-confirm-start")
        chip = page.locator("#job-chips [data-kind=describe]")
        expect(chip).to_contain_text("0/12")
        expect(page.locator("#bulk-progress")).to_be_visible()
        for path in ("/models", "/", "/upload", "/folders"):  # server-rendered: it survives reloads
            page.goto(path)
            expect(page.locator("#job-chips [data-kind=describe]")).to_contain_text("0/12")
            assert_no_sideways_scroll(page)
        page.goto("/models")
        expect(page.locator("#bulk-progress")).to_be_visible()
        expect(page.locator("#bulk-detail")).to_contain_text("of 12")
        page.click("#bulk-cancel")
        expect(page.locator("#job-chips [data-kind=describe]")).to_have_attribute("data-state", "cancelled")
        page.reload()
        expect(page.locator("#job-chips [data-job-chip]")).to_have_count(0)
        expect(page.locator("#bulk-progress")).to_be_hidden()


@pytest.mark.parametrize("size", VIEWPORTS)
def test_upload_progress_only_goes_forward(browser, demo_server, tmp_path, size):
    samples = render_sample_memes(tmp_path, count=3, seed=71 if size == "phone" else 72)
    payload = [{"name": s.path.name, "data": base64.b64encode(s.path.read_bytes()).decode()} for s in samples]
    with open_page(browser, demo_server, size) as page:
        # Record every value every progress bar takes (the value property reflects to the attribute).
        page.add_init_script("""
            window.progressSeen = [];
            new MutationObserver((records) => {
                for (const r of records) window.progressSeen.push([r.target.id || r.target.closest("li").textContent, Number(r.target.value)]);
            }).observe(document, {subtree: true, attributes: true, attributeFilter: ["value"]});
        """)
        page.goto("/upload")
        page.evaluate(
            """(files) => {
                const transfer = new DataTransfer();
                for (const f of files) {
                    const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
                    transfer.items.add(new File([bytes], f.name, {type: "image/png"}));
                }
                document.querySelector("#dropzone").dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
            }""",
            payload,
        )
        expect(page.locator("#upload-summary")).to_have_attribute("data-state", "done", timeout=90_000)
        expect(page.locator("#upload-overall-bar")).to_have_attribute("value", "100")
        seen: dict[str, list[float]] = {}
        for key, value in page.evaluate("window.progressSeen"):
            seen.setdefault(key, []).append(value)
        overall = seen.pop("upload-overall-bar")
        assert overall == sorted(overall) and overall[-1] == 100
        assert len(seen) == 3
        for values in seen.values():
            assert values == sorted(values) and values[-1] == 1
        assert_no_sideways_scroll(page)


# -- warm and welcoming -------------------------------------------------------------------------


@pytest.mark.parametrize("size", VIEWPORTS)
def test_an_empty_library_welcomes_with_both_ways_to_add_memes(browser, empty_server, size):
    with open_page(browser, empty_server, size) as page:
        page.goto("/")
        welcome = page.locator("#welcome")
        expect(welcome).to_be_visible()
        expect(page.locator("#results")).to_be_hidden()
        assert_no_sideways_scroll(page)
        welcome.get_by_role("link", name="Upload memes").click()
        expect(page).to_have_url(f"{empty_server.url}/upload")
        page.go_back()
        page.locator("#welcome").get_by_role("link", name="Add a folder").click()
        expect(page).to_have_url(f"{empty_server.url}/folders")


def test_the_favicon_is_an_svg_linked_from_every_page(browser, empty_server):
    icon = httpx.get(f"{empty_server.url}/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")
    assert icon.content.startswith(b"<svg")
    with open_page(browser, empty_server) as page:
        page.goto("/upload")
        href = page.locator('link[rel="icon"]').get_attribute("href")
        status = page.evaluate("async (href) => (await fetch(href)).status", href)
        assert status == 200


def test_the_search_model_is_loaded_before_the_first_search(empty_server):
    """`serve` opens the embedder in the background at start: nobody searched this server yet."""
    deadline = time.monotonic() + 90
    while not httpx.get(f"{empty_server.url}/healthz").json()["search_warm"]:
        assert time.monotonic() < deadline, "the search model was not preloaded"
        time.sleep(0.2)
    log = Path(empty_server.log.name).read_text()
    assert "could not preload" not in log
