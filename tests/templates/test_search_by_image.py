"""Search by image with no model downloaded: a real library of template memes (real OCR, real
grouping, real MiniLM), searched by exact files, screenshots, new captions and unrelated pictures;
through the engine, the CLI, the JSON API and the search page in Chromium (desktop and phone)."""

from __future__ import annotations

import base64
import io
import json
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image
from playwright.sync_api import expect

from memesearch.errors import ImageError
from memesearch.library.decode import load_rgb
from memesearch.library.fonts import find_bold_fonts, load_font
from memesearch.search.by_image import search_by_image
from memesearch.templates import synthetic
from tests.templates.conftest import indexed_template_library
from tests.web.server import ServerProcess

expect.set_options(timeout=60_000)
HIT_KEYS = {"id", "path", "score", "ocr_text", "description", "user_description", "tags", "format"}


@pytest.fixture(scope="module")
def library(tmp_path_factory, shared_models_dir):
    root = tmp_path_factory.mktemp("image-search")
    # Plus 6 memes that are mostly words on a gradient or a simple picture (PNG, JPEG, GIF, WebP).
    core, memes = indexed_template_library(root, shared_models_dir, templates=3, variants=3, distractors=4, seed=1,
                                           samples=6)
    ids = {Path(row.path).name: row.id for row in core.store.get_memes(core.store.meme_ids())}
    yield core, memes, ids, root
    core.close()


def jpeg_bytes(image: Image.Image, quality: int = 70) -> bytes:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def captioned(memes) -> list:
    return [m for m in memes if m.template is not None and m.recipe != "blank"]


def template_ids(memes, ids, template: int) -> set[int]:
    return {ids[m.path.name] for m in memes if m.template == template}


def found(core, data: bytes) -> list[tuple[int, str]]:
    result = search_by_image(core, data, name="query", limit=50)
    return [(hit.id, result.kinds[hit.id]) for hit in result.hits]


def unrelated_picture() -> Image.Image:
    """A new photo-like picture carrying a caption the library's memes also carry (same words, font, layout)."""
    picture = synthetic.photo_like(600, 480, np.random.default_rng(2024))
    font = load_font(find_bold_fonts()[0], 40)
    return synthetic.caption(picture, "BREAD RISING FASTER THAN MY CAREER", "top-bottom", font)


def test_the_exact_file_finds_itself_first_then_its_template(library):
    core, memes, ids, _ = library
    for meme in captioned(memes)[:3]:
        hits = found(core, meme.path.read_bytes())
        assert hits[0] == (ids[meme.path.name], "exact")
        # Every other member of its template follows; nothing else does.
        assert {meme_id for meme_id, _ in hits} == template_ids(memes, ids, meme.template)


@pytest.mark.parametrize("change", ["resized+jpeg", "cropped", "screenshot"])
def test_a_screenshot_of_a_meme_finds_that_meme_first(library, change):
    core, memes, ids, _ = library
    for meme in captioned(memes)[:4]:
        image = Image.open(meme.path).convert("RGB")
        if change == "resized+jpeg":
            image = synthetic.resize(image, 0.6)
        elif change == "cropped":
            image = synthetic.crop(image, 0.06, 0.04, 0.05, 0.03)
        else:  # a phone screenshot: a bit cut off, on a dark app background
            image = synthetic.frame(synthetic.crop(image, 0.03, 0.02, 0.02, 0.03), 0.06, (24, 26, 30))
        hits = found(core, jpeg_bytes(image, 55))
        assert hits[0] == (ids[meme.path.name], "duplicate"), (meme.recipe, hits)
        assert {meme_id for meme_id, _ in hits} == template_ids(memes, ids, meme.template)
        assert [kind for _, kind in hits[1:]] == ["template"] * (len(hits) - 1)


@pytest.mark.parametrize("change", ["resized+jpeg", "cropped", "screenshot"])
def test_a_screenshot_of_a_words_on_background_meme_finds_it(library, change):
    core, _, ids, root = library
    for path in sorted((root / "memes" / "samples").iterdir()):
        image = load_rgb(path, 64)
        if change == "resized+jpeg":
            image = synthetic.resize(image, 0.7)
        elif change == "cropped":
            image = synthetic.crop(image, 0.05, 0.04, 0.05, 0.04)
        else:
            image = synthetic.frame(synthetic.crop(image, 0.03, 0.02, 0.02, 0.03), 0.06, (24, 26, 30))
        hits = found(core, jpeg_bytes(image, 60))
        assert hits and hits[0] == (ids[path.name], "duplicate"), (path.name, hits)


def test_a_new_caption_on_a_template_finds_its_siblings(library):
    core, memes, ids, _ = library
    font = load_font(find_bold_fonts()[0], 36)
    for template in range(3):
        blank = next(m for m in memes if m.template == template and m.recipe == "blank")
        image = synthetic.caption(Image.open(blank.path).convert("RGB"), "WHEN THE BUILD PASSES ON A FRIDAY", "top-bottom", font)
        hits = found(core, jpeg_bytes(image))
        assert {meme_id for meme_id, _ in hits} == template_ids(memes, ids, template)
        assert {kind for _, kind in hits} == {"template"}


def test_an_unrelated_picture_finds_nothing(library):
    core, _, _, _ = library
    assert found(core, jpeg_bytes(unrelated_picture())) == []
    plain = synthetic.plain_background(500, 400, np.random.default_rng(5))
    assert found(core, jpeg_bytes(plain)) == []


@pytest.mark.parametrize("data", [b"", b"not an image at all", b"\x89PNG\r\n\x1a\n" + b"\0" * 64], ids=["empty", "text", "broken-png"])
def test_corrupt_bytes_are_a_clear_error(library, data):
    core, _, _, _ = library
    with pytest.raises(ImageError) as caught:
        search_by_image(core, data, name="query.png")
    assert "query.png" in caught.value.message and "\n" not in caught.value.message


def cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "memesearch", "--data-dir", str(home), *args],
                          capture_output=True, text=True, timeout=600)


def test_cli_search_image_json_has_the_text_search_shape(library, tmp_path):
    core, memes, ids, root = library
    meme = captioned(memes)[0]
    done = cli(root / "data", "search", "--image", str(meme.path), "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    text = json.loads(cli(root / "data", "search", "career", "--json").stdout)
    assert set(answer) == set(text) and answer["mode"] == "image"
    assert all(set(hit) == HIT_KEYS for hit in answer["hits"])
    assert answer["hits"][0]["id"] == ids[meme.path.name] and answer["hits"][0]["path"] == str(meme.path.resolve())
    assert answer["total"] == len(template_ids(memes, ids, meme.template))
    unrelated = tmp_path / "unrelated.jpg"
    unrelated.write_bytes(jpeg_bytes(unrelated_picture()))
    assert json.loads(cli(root / "data", "search", "--image", str(unrelated), "--json").stdout)["hits"] == []


@pytest.mark.parametrize("kind", ["corrupt", "missing", "directory"])
def test_cli_bad_image_is_one_sentence_and_exit_2(library, tmp_path, kind):
    _, _, _, root = library
    target = {"corrupt": tmp_path / "broken.jpg", "missing": tmp_path / "nope.png", "directory": tmp_path}[kind]
    if kind == "corrupt":
        target.write_bytes(b"\xff\xd8\xff\xe0" + b"garbage" * 10)
    done = cli(root / "data", "search", "--image", str(target), "--json")
    assert done.returncode == 2 and done.stdout == ""
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 2 and lines[0].startswith("error: ") and lines[1].startswith("hint: "), done.stderr
    assert "Traceback" not in done.stderr


@pytest.fixture(scope="module")
def server(library):
    _, _, _, root = library
    process = ServerProcess(root / "data", MEMESEARCH_MAX_UPLOAD_MB="2").wait_ready()
    yield process
    process.stop()


def test_api_search_image(library, server):
    _, memes, ids, _ = library
    meme = captioned(memes)[1]
    with httpx.Client(base_url=server.url, timeout=120) as client:
        client.get("/")
        headers = {"X-CSRF-Token": client.cookies["ms_csrf"]}

        def post(data: bytes, field: str = "image", **params):
            return client.post("/api/search/image", files={field: ("shot.jpg", data, "image/jpeg")},
                               headers=headers, params=params)

        answer = post(jpeg_bytes(synthetic.resize(Image.open(meme.path), 0.7)))
        assert answer.status_code == 200
        body = answer.json()
        assert set(body) == {"query", "mode", "hits", "total", "total_is_exact"} and body["mode"] == "image"
        assert body["hits"][0]["id"] == ids[meme.path.name] and all(set(h) == HIT_KEYS for h in body["hits"])
        assert len(post(meme.path.read_bytes(), limit=1).json()["hits"]) == 1
        assert post(jpeg_bytes(unrelated_picture())).json()["hits"] == []
        corrupt = post(b"GIF89a broken")
        assert corrupt.status_code == 422 and "shot.jpg" in corrupt.json()["detail"]
        assert post(jpeg_bytes(unrelated_picture()), field="file").status_code == 422  # wrong field: says which
        assert "'image'" in post(b"x", field="file").json()["detail"]
        assert post(b"\xff" * 2_100_000).status_code == 413
        assert client.post("/api/search/image", json={"image": "x"}, headers=headers).status_code == 422
    # Like every write-shaped request, a POST without the page's CSRF token is refused.
    assert httpx.post(f"{server.url}/api/search/image", files={"image": ("a.jpg", b"x")}).status_code == 403


@pytest.fixture(params=[(1280, 900), (390, 844)], ids=["desktop", "phone"])
def page(request, browser, server):
    context = browser.new_context(base_url=server.url, viewport=dict(zip(("width", "height"), request.param)))
    opened = context.new_page()
    problems: list[str] = []
    opened.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    yield opened
    context.close()
    assert problems == []


def _send_file_event(page, event: str, data: bytes, name: str, mime: str) -> None:
    """Dispatch a paste or drop event carrying a File, as the browser does for a screenshot or a dragged file."""
    page.evaluate(
        """([event, b64, name, mime]) => {
          const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
          const transfer = new DataTransfer();
          transfer.items.add(new File([bytes], name, { type: mime }));
          if (event === "paste") {
            document.dispatchEvent(new ClipboardEvent("paste", { clipboardData: transfer, bubbles: true }));
          } else {
            for (const kind of ["dragenter", "dragover", "drop"])
              document.body.dispatchEvent(new DragEvent(kind, { dataTransfer: transfer, bubbles: true, cancelable: true }));
          }
        }""",
        [event, base64.b64encode(data).decode(), name, mime],
    )


def test_search_page_upload_paste_and_drop(library, page):
    _, memes, ids, _ = library
    meme = captioned(memes)[2]
    siblings = template_ids(memes, ids, meme.template)
    page.goto("/")
    hits = page.locator("#hits .hit")
    # Upload: the button opens the file chooser.
    with page.expect_file_chooser() as chooser:
        page.click("#image-search-button")
    chooser.value.set_files(str(meme.path))
    expect(hits).to_have_count(len(siblings))
    expect(hits.first).to_have_attribute("data-id", str(ids[meme.path.name]))
    expect(hits.first.locator(".match-kind")).to_have_text("this file")
    expect(page.locator("#image-query")).to_be_visible()
    # Choosing the file must not also start a text search whose answer replaces the picture's
    # (the file input once sat inside the search form, whose "input" event searches after 250 ms).
    page.wait_for_timeout(600)
    expect(hits.first.locator(".match-kind")).to_have_text("this file")
    for image in page.locator("#hits img").all():
        # Thumbnails load lazily: below a phone's fold they only load once scrolled to.
        image.scroll_into_view_if_needed()
        expect(image).to_have_js_property("complete", True)
        assert image.evaluate("img => img.naturalWidth") > 0, "a result thumbnail is broken"
    assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
    # Paste a screenshot (a cropped JPEG of the same meme).
    shot = jpeg_bytes(synthetic.crop(Image.open(meme.path).convert("RGB"), 0.05, 0.05, 0.05, 0.05))
    page.fill("#q", "")
    _send_file_event(page, "paste", shot, "image.png", "image/jpeg")
    expect(page.locator("#image-query-name")).to_have_text("image.png")
    expect(hits.first.locator(".match-kind")).to_have_text("same meme")
    expect(hits.first).to_have_attribute("data-id", str(ids[meme.path.name]))
    # Drop an unrelated picture: nothing, said plainly.
    _send_file_event(page, "drop", jpeg_bytes(unrelated_picture()), "holiday.jpg", "image/jpeg")
    expect(page.locator("#no-results")).to_contain_text("No meme looks like holiday.jpg")
    expect(hits).to_have_count(0)
    # Drop a broken file: the error shows, the page keeps working.
    _send_file_event(page, "drop", b"not an image", "notes.txt", "text/plain")
    expect(page.locator("#image-query-status")).to_contain_text("not an image")
    # Clearing goes back to text search.
    page.click("#image-query-clear")
    expect(page.locator("#image-query")).to_be_hidden()
    page.fill("#q", "career")
    expect(page.locator("#hits .hit").first).to_be_visible()
