#!/usr/bin/env python3
"""Screenshots of every page, light and dark, desktop and phone, into docs/screenshots/.

Builds a small demo library (rendered sample memes, real OCR and MiniLM, fake
descriptions, a few tags) in a temporary data dir, runs `memesearch serve` on a
free loopback port and drives Debian's Chromium with Playwright. A second,
empty data dir gives the welcome page. Files: NAME-THEME.png (1280x860) and
NAME-phone-THEME.png (390x844); a new page is one line in PAGES.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots] [--only search,meme]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.web.server import CHROMIUM, CHROMIUM_ARGS, ServerProcess  # noqa: E402

PAGES = [  # (file name, path ("MEME": the meme page of a search hit), what to wait for)
    ("search", "/?q=cat+homework", ".hit"),
    ("search-list", "/?q=", ".hit"),
    ("meme", "MEME", "#full-image"),
    ("upload", "/upload", "#dropzone"),
    ("templates", "/templates", ".template-card"),
    ("template", "/templates/1", "#template-members"),
    ("folders", "/folders", ".folder"),
    ("models", "/models", "#bulk-form"),
    ("tags", "/tags", "#tag-admin"),
    ("settings", "/settings", "#settings-form"),
    ("search-select", "/?q=", ".hit"),  # the grid in select mode, two memes picked
    ("search-image", "/", "#image-search-button"),  # search by a screenshot of a template meme
    ("not-found", "/memes/99999999", ".error-page"),
]
EMPTY_PAGES = [("welcome", "/", "#welcome")]  # served from an empty data dir
VIEWPORTS = {"": {"width": 1280, "height": 860}, "-phone": {"width": 390, "height": 844}}


def build_library(home: Path, memes: Path) -> None:
    from memesearch.app import Core
    from memesearch.library.indexing import run_index
    from memesearch.config import Settings
    from memesearch.library.samples import render_sample_memes
    from memesearch.ml.factory import load_captioner
    from memesearch.store.templates import TemplateStore
    from memesearch.templates.synthetic import render_template_set

    render_sample_memes(memes, count=24, seed=3)
    render_template_set(memes / "templates", templates=3, variants=3, distractors=0, seed=5)
    core = Core(Settings(home=home, threads=2))
    core.store.add_folder(str(memes))
    run_index(core, captioner=load_captioner("fake", core.settings))
    ids = core.store.meme_ids()
    core.store.add_tags(ids[0], ["classic", "reaction"])
    core.store.add_tags(ids[1], ["reaction"])
    core.store.add_tags(ids[2], ["cats", "wholesome"])
    core.store.set_tag_color("reaction", "blue")
    core.store.set_tag_color("cats", "orange")
    core.store.set_tag_color("wholesome", "green")
    core.store.create_tag("unused")
    core.store.set_user_description(ids[7], "the cat sits on the homework, as cats do")
    core.pipeline.run_embed()
    TemplateStore(core.store).set_name(TemplateStore(core.store).groups()[0]["id"], "Galaxy brain")
    core.close()


def search_by_picture(page, server) -> None:
    """Search by a cropped screenshot of a captioned member of the first template group."""
    import io

    import httpx
    from PIL import Image

    member = httpx.get(f"{server.url}/api/templates").json()["groups"][0]["members"][1]["id"]
    image = Image.open(io.BytesIO(httpx.get(f"{server.url}/files/{member}/image").content)).convert("RGB")
    width, height = image.size
    shot = io.BytesIO()
    image.crop((width // 20, height // 20, width - width // 20, height - height // 20)).save(shot, "JPEG", quality=70)
    page.set_input_files("#image-search-file", files=[{"name": "screenshot.jpg", "mimeType": "image/jpeg",
                                                       "buffer": shot.getvalue()}])
    page.wait_for_selector(".match-kind", timeout=120_000)


def shoot(browser, server, pages, meme_id: int, out: Path, only: set[str]) -> None:
    """Every page of ``pages`` at every viewport, light and dark."""
    for suffix, viewport in VIEWPORTS.items():
        for theme in ("light", "dark"):
            context = browser.new_context(base_url=server.url, color_scheme=theme, viewport=viewport)
            page = context.new_page()
            for name, path, ready in pages:
                if only and name not in only:
                    continue
                page.goto(f"/memes/{meme_id}" if path == "MEME" else path)
                view = "list" if name == "search-list" else "grid"
                if page.evaluate("localStorage.getItem('memesearch-view') || 'grid'") != view:
                    page.evaluate(f"localStorage.setItem('memesearch-view', '{view}')")
                    page.reload()
                page.wait_for_selector(ready)
                if name == "search-select":
                    page.click("#select-mode")
                    page.locator(".hit").nth(0).click()
                    page.locator(".hit").nth(1).click()
                    page.evaluate("window.scrollTo(0, 0)")
                if name == "search-image":
                    search_by_picture(page, server)
                page.wait_for_load_state("networkidle")
                full_page = name == "meme"
                if full_page:  # bring the lazy thumbnails further down in, then back to the top
                    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
                    page.wait_for_load_state("networkidle")
                    page.evaluate("window.scrollTo(0, 0)")
                # Wait for the images in view (lazy ones further down never load in a screenshot).
                page.evaluate(f"""Promise.race([new Promise((done) => setTimeout(done, 10000)), Promise.all(
                    Array.from(document.images).filter((img) => {str(full_page).lower()} || img.getBoundingClientRect().top < innerHeight)
                    .map((img) => img.decode().catch(() => null)))])""")
                time.sleep(0.3)
                target = out / f"{name}{suffix}-{theme}.png"
                page.screenshot(path=str(target), full_page=full_page)
                print(f"wrote {target}")
            context.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    parser.add_argument("--only", default="", help="comma-separated page names (default: all)")
    args = parser.parse_args()
    only = set(filter(None, args.only.split(",")))
    # The demo library is described by the deterministic fake model, a developer model the
    # server hides unless told otherwise (the server process inherits this environment).
    os.environ["MEMESEARCH_DEV"] = "1"
    from playwright.sync_api import sync_playwright

    args.out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="memesearch-shots-") as work:
        home, memes = Path(work) / "data", Path(work) / "memes"
        build_library(home, memes)
        server = ServerProcess(home).wait_ready()
        try:
            import httpx

            meme_id = httpx.get(f"{server.url}/api/search", params={"q": "cat homework", "limit": 1}).json()["hits"][0]["id"]
            # A finished bulk run, so the models page shows its progress and history.
            with httpx.Client(base_url=server.url) as api:
                api.get("/healthz")
                headers = {"X-CSRF-Token": api.cookies["ms_csrf"]}
                run = api.post("/api/jobs", json={"kind": "describe", "model": "fake", "meme_ids": [meme_id]}, headers=headers).json()
                while api.get(f"/api/jobs/{run['id']}").json()["state"] not in ("done", "failed", "cancelled"):
                    time.sleep(0.2)
            empty_home = Path(work) / "empty" / "data"
            empty_home.mkdir(parents=True)
            (empty_home / "models").symlink_to(home / "models", target_is_directory=True)  # MiniLM, built once
            empty = ServerProcess(empty_home).wait_ready()
            try:
                with sync_playwright() as playwright:
                    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                    shoot(browser, server, PAGES, meme_id, args.out, only)
                    shoot(browser, empty, EMPTY_PAGES, meme_id, args.out, only)
                    browser.close()
            finally:
                empty.stop()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
