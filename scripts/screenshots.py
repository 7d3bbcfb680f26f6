#!/usr/bin/env python3
"""Screenshots of the main pages, light and dark, into docs/screenshots/.

Builds a small demo library (rendered sample memes, real OCR and MiniLM, fake
descriptions, a few tags) in a temporary data dir, runs `memesearch serve` on a
free loopback port and drives Debian's Chromium with Playwright.

    .venv/bin/python scripts/screenshots.py [--out docs/screenshots]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.web.server import CHROMIUM, CHROMIUM_ARGS, ServerProcess  # noqa: E402

PAGES = [  # (file name, path or callable giving it, what to wait for)
    ("search", "/?q=cat+homework", ".hit"),
    ("search-list", "/?q=", ".hit"),
    ("meme", "MEME", "#full-image"),
    ("upload", "/upload", "#dropzone"),
    ("folders", "/folders", ".folder"),
    ("models", "/models", "#bulk-form"),
    ("tags", "/tags", "#tag-admin"),
    ("settings", "/settings", "#settings-form"),
]
PHONE = {"width": 390, "height": 844}
PHONE_PAGES = [  # also shot at phone size, as <name>-phone-<theme>.png
    ("tags", "/tags", "#tag-admin"),
    ("settings", "/settings", "#settings-form"),
    ("search-select", "/?q=", ".hit"),
]


def build_library(home: Path, memes: Path) -> None:
    from memesearch.app import Core
    from memesearch.cli.library_cmds import run_index
    from memesearch.config import Settings
    from memesearch.library.samples import render_sample_memes
    from memesearch.ml.chain import load_captioner
    from memesearch.ml.registry import get_spec

    render_sample_memes(memes, count=24, seed=3)
    core = Core(Settings(home=home, threads=2))
    core.store.add_folder(str(memes))
    run_index(core, show_progress=False, captioner=load_captioner(get_spec("fake"), core.settings))
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
    core.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "screenshots")
    args = parser.parse_args()
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
            with sync_playwright() as playwright:
                browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
                for theme in ("light", "dark"):
                    context = browser.new_context(base_url=server.url, color_scheme=theme,
                                                  viewport={"width": 1280, "height": 860})
                    page = context.new_page()
                    for name, path, ready in PAGES:
                        if name == "search-list":
                            page.evaluate("localStorage.setItem('memesearch-view', 'list')")
                        page.goto(f"/memes/{meme_id}" if path == "MEME" else path)
                        page.wait_for_selector(ready)
                        page.wait_for_load_state("networkidle")
                        time.sleep(0.3)
                        page.screenshot(path=str(args.out / f"{name}-{theme}.png"), full_page=name == "meme")
                        if name == "search-list":
                            page.evaluate("localStorage.setItem('memesearch-view', 'grid')")
                        print(f"wrote {args.out / f'{name}-{theme}.png'}")
                    context.close()
                    phone = browser.new_context(base_url=server.url, color_scheme=theme, viewport=PHONE,
                                                has_touch=True, device_scale_factor=2)
                    page = phone.new_page()
                    for name, path, ready in PHONE_PAGES:
                        page.goto(path)
                        page.wait_for_selector(ready)
                        if name == "search-select":  # the grid in select mode, two memes picked
                            page.click("#select-mode")
                            page.locator(".hit").nth(0).click()
                            page.locator(".hit").nth(1).click()
                            page.evaluate("window.scrollTo(0, 0)")
                        page.wait_for_load_state("networkidle")
                        time.sleep(0.3)
                        target = args.out / f"{name}-phone-{theme}.png"
                        page.screenshot(path=str(target))
                        print(f"wrote {target}")
                    phone.close()
                browser.close()
        finally:
            server.stop()


if __name__ == "__main__":
    main()
