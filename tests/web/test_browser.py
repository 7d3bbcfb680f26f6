"""The web app in a real browser (Debian Chromium via Playwright) against `memesearch serve`."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import expect

from memesearch.library.samples import render_sample_memes
from tests.web.conftest import copy_library
from tests.web.server import ServerProcess

expect.set_options(timeout=30_000)


@pytest.fixture(scope="module")
def server(web_template, tmp_path_factory):
    home = tmp_path_factory.mktemp("browser") / "data"
    copy_library(web_template, home).close()
    process = ServerProcess(home).wait_ready()
    yield process
    process.stop()


@pytest.fixture
def page(browser, server):
    """A fresh browser tab; any script error or CSP violation on it fails the test."""
    context = browser.new_context(base_url=server.url, color_scheme="light")
    context.grant_permissions(["clipboard-read", "clipboard-write"], origin=server.url)
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    # Failed HTTP requests the test provokes on purpose are logged as errors too; those are not script problems.
    opened.on("console", lambda message: problems.append(message.text) if message.type == "error"
              and not message.text.startswith("Failed to load resource") else None)
    yield opened
    context.close()
    assert problems == []


def meme_id_of(server, path: Path) -> int:
    hits = httpx.get(f"{server.url}/api/search", params={"limit": 1000}).json()["hits"]
    return next(hit["id"] for hit in hits if hit["path"] == str(path))


def search(page, text: str) -> None:
    page.goto("/")
    page.fill("#q", text)


def test_type_a_query_and_see_the_right_meme_first(page, server, web_template):
    target = web_template[2][8]  # "HAUNTED BY THE EMAIL I FORGOT TO SEND"
    search(page, "haunted by the email")
    expect(page.locator(".hit").first).to_have_attribute("data-id", str(meme_id_of(server, target.path)))
    expect(page.locator("#summary")).to_contain_text(" ms")
    expect(page.locator(".hit").first.locator("mark").first).to_have_text("HAUNTED")
    # Keyboard: "/" focuses the search box, arrows select a hit, Enter opens it.
    page.locator("body").click(position={"x": 5, "y": 300})
    page.keyboard.press("/")
    expect(page.locator("#q")).to_be_focused()
    page.keyboard.press("ArrowDown")
    expect(page.locator(".hit.selected")).to_have_count(1)
    page.keyboard.press("Enter")
    expect(page).to_have_url(f"{server.url}/memes/{meme_id_of(server, target.path)}")


def test_copy_a_hit_to_the_clipboard_and_download_it(page, server, web_template):
    search(page, "llama")
    first = page.locator(".hit").first
    # Wait for the debounced search to replace the initial list, or the clicks below could
    # land on a hit of the old list.
    llama_id = str(meme_id_of(server, web_template[2][4].path))
    expect(first).to_have_attribute("data-id", llama_id)
    first.locator("[data-copy]").click()
    expect(page.locator("#toast")).to_have_text("Image copied")
    types = page.evaluate("async () => (await navigator.clipboard.read()).flatMap((item) => item.types)")
    assert types == ["image/png"]
    with page.expect_download() as download:
        first.get_by_text("Download").click()
    meme = httpx.get(f"{server.url}/api/memes/{llama_id}").json()
    assert download.value.suggested_filename == Path(meme["path"]).name


def test_tag_a_meme_then_filter_by_tag(page, server, web_template):
    meme_id = meme_id_of(server, web_template[2][7].path)  # the cat meme
    page.goto(f"/memes/{meme_id}")
    page.fill("#tag-input", "cats")
    page.click("#tag-form button[type=submit]")
    expect(page.locator("#tag-list")).to_contain_text("#cats")
    page.goto("/")
    page.locator(".chip", has_text="#cats").click()
    expect(page.locator(".hit")).to_have_count(1)
    expect(page.locator(".hit").first).to_have_attribute("data-id", str(meme_id))


def test_edit_a_description_then_find_the_meme_by_it(page, server, web_template):
    meme_id = meme_id_of(server, web_template[2][4].path)  # the llama meme
    page.goto(f"/memes/{meme_id}")
    page.fill("#user-description", "quokka hosting a birthday party")
    page.click("#description-form button[type=submit]")
    expect(page.locator("#description-status")).to_have_text("Saved")
    search(page, "quokka birthday")
    expect(page.locator(".hit").first).to_have_attribute("data-id", str(meme_id))


def test_regenerate_a_description_with_a_chosen_model(page, server, web_template):
    meme_id = meme_id_of(server, web_template[2][9].path)
    page.goto(f"/memes/{meme_id}")
    page.select_option("#regenerate-model", "fake")
    page.click("#regenerate-form button[type=submit]")
    description = page.locator(".description").first
    expect(description).to_contain_text("a mostly")  # the page reloads when the run is done
    expect(description.locator(".muted")).to_contain_text("fake · fake")


def test_upload_three_files_by_drag_and_drop_and_find_them(page, server, web_template, tmp_path):
    known = {s.text for s in web_template[2]}
    samples = [s for s in render_sample_memes(tmp_path, count=10, seed=41) if s.text not in known][:3]
    payload = [{"name": s.path.name, "data": base64.b64encode(s.path.read_bytes()).decode()} for s in samples]
    page.goto("/upload")
    page.evaluate(
        """(files) => {
            const transfer = new DataTransfer();
            for (const f of files) {
                const bytes = Uint8Array.from(atob(f.data), (c) => c.charCodeAt(0));
                transfer.items.add(new File([bytes], f.name, {type: "application/octet-stream"}));
            }
            const zone = document.querySelector("#dropzone");
            zone.dispatchEvent(new DragEvent("dragenter", {dataTransfer: transfer, bubbles: true}));
            zone.dispatchEvent(new DragEvent("drop", {dataTransfer: transfer, bubbles: true, cancelable: true}));
        }""",
        payload,
    )
    expect(page.locator(".upload-row.ok")).to_have_count(3)
    expect(page.locator("#upload-summary")).to_have_attribute("data-state", "done", timeout=90_000)
    for sample in samples:
        search(page, sample.text.lower())
        expect(page.locator(".hit").first.locator(".hit-title")).to_have_text(sample.path.name)


def test_upload_with_the_file_picker_and_by_pasting(page, server, web_template, tmp_path):
    known = {s.text for s in web_template[2]}
    samples = [s for s in render_sample_memes(tmp_path, count=10, seed=43) if s.text not in known][:3]
    page.goto("/upload")
    page.set_input_files("#file-picker", [str(s.path) for s in samples[:2]])
    expect(page.locator(".upload-row.ok")).to_have_count(2)
    pasted = samples[2]
    # A screenshot pasted from the clipboard arrives as an unnamed image file.
    page.evaluate(
        """(data) => {
            const bytes = Uint8Array.from(atob(data), (c) => c.charCodeAt(0));
            const transfer = new DataTransfer();
            transfer.items.add(new File([bytes], "", {type: "image/png"}));
            document.dispatchEvent(new ClipboardEvent("paste", {clipboardData: transfer, bubbles: true, cancelable: true}));
        }""",
        base64.b64encode(pasted.path.read_bytes()).decode(),
    )
    expect(page.locator(".upload-row.ok")).to_have_count(3)
    expect(page.locator("#upload-summary")).to_have_attribute("data-state", "done", timeout=90_000)
    for sample in samples[:2]:
        search(page, sample.text.lower())
        expect(page.locator(".hit").first.locator(".hit-title")).to_have_text(sample.path.name)
    search(page, pasted.text.lower())
    expect(page.locator(".hit").first.locator(".hit-title")).to_contain_text("pasted")


def test_add_a_folder_and_rescan(page, server, tmp_path):
    folder = tmp_path / "new folder"
    render_sample_memes(folder, count=2, seed=51)
    page.goto("/folders")
    page.fill("#folder-path", str(folder))
    page.click("#folder-form button[type=submit]")
    card = page.locator(f'.folder[data-path="{folder}"]')
    expect(card.locator(".folder-count")).to_have_text("2", timeout=60_000)
    render_sample_memes(folder / "later", count=1, seed=52)
    card.locator("[data-rescan]").click()
    expect(card.locator(".folder-count")).to_have_text("3", timeout=60_000)
    page.fill("#folder-path", str(folder / "missing"))
    page.click("#folder-form button[type=submit]")
    expect(page.locator("#folder-error")).to_contain_text("does not exist")


def test_bulk_describe_with_the_fake_model_reaches_100_percent(page, server):
    page.goto("/models")
    page.select_option("#bulk-model", "fake")
    page.click("#bulk-start")
    page.click("#bulk-confirm-start")  # after the estimate: "N memes, about ... with fake"
    expect(page.locator("#bulk-percent")).to_have_text("100 %", timeout=90_000)
    expect(page.locator("#bulk-progress")).to_have_attribute("data-state", "done")
    runs = httpx.get(f"{server.url}/api/jobs").json()["runs"]
    describe = next(run for run in runs if run["kind"] == "describe")
    assert describe["state"] == "done" and describe["done"] == describe["total"] > 0


def test_dark_mode_toggles_and_is_remembered(page, browser, server):
    page.goto("/")
    background = "getComputedStyle(document.body).backgroundColor"
    light = page.evaluate(background)
    page.click("#theme-toggle")
    expect(page.locator("html")).to_have_attribute("data-theme", "dark")
    dark = page.evaluate(background)
    assert dark != light
    page.reload()
    assert page.evaluate(background) == dark
    # With no stored choice the system preference decides.
    context = browser.new_context(base_url=server.url, color_scheme="dark")
    fresh = context.new_page()
    fresh.goto("/")
    assert fresh.evaluate(background) == dark
    context.close()


@pytest.fixture
def locked_server(web_template, tmp_path):
    home = tmp_path / "data"
    copy_library(web_template, home).close()
    process = ServerProcess(home, MEMESEARCH_PASSWORD="correct horse").wait_ready()
    yield process
    process.stop()


def test_login_and_csrf_rejection(browser, locked_server):
    context = browser.new_context(base_url=locked_server.url)
    page = context.new_page()
    page.goto("/upload")
    expect(page).to_have_url(f"{locked_server.url}/login?next=/upload")
    page.fill("input[name=password]", "wrong")
    page.click("main button[type=submit]")
    expect(page.locator(".error-message")).to_have_text("wrong password")
    page.fill("input[name=password]", "correct horse")
    page.click("main button[type=submit]")
    expect(page).to_have_url(f"{locked_server.url}/upload")
    forged = page.evaluate(
        """async () => {
            const r = await fetch("/api/folders", {method: "POST", headers: {"Content-Type": "application/json"},
                                                   body: JSON.stringify({path: "/tmp"})});
            return [r.status, await r.json()];
        }"""
    )
    assert forged[0] == 403 and "CSRF" in forged[1]["detail"]
    with_token = page.evaluate(
        """async () => {
            const token = document.querySelector('meta[name="csrf-token"]').content;
            const r = await fetch("/api/folders/999/rescan", {method: "POST", headers: {"X-CSRF-Token": token}});
            return r.status;
        }"""
    )
    assert with_token == 404  # passed login and CSRF; the folder just does not exist
    context.close()
    assert json.loads(httpx.get(f"{locked_server.url}/api/jobs").text)["status"] == 401
