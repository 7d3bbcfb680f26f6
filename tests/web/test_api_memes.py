"""JSON API for search, memes, tags and files (FastAPI test client, real indexed library)."""

from __future__ import annotations

import json
import subprocess
import sys

from memesearch.web.views import highlight
from tests.web.conftest import sample_by_id


def _first_hit(client, query: str, **params) -> dict:
    response = client.get("/api/search", params={"q": query, **params})
    assert response.status_code == 200, response.text
    return response.json()


def test_search_returns_the_cli_json_shape(client, web_core, web_template):
    home, _, samples = web_template
    target = samples[2]  # "one does not simply walk into mordor"
    data = _first_hit(client, "does not simply walk", limit=5)
    assert data["hits"][0]["path"] == str(target.path)
    cli = subprocess.run(
        [sys.executable, "-m", "memesearch", "--data-dir", str(web_core.settings.home), "search",
         "does not simply walk", "--limit", "5", "--json"],
        capture_output=True, text=True, check=True,
    )
    assert json.loads(cli.stdout) == data


def test_search_modes_limit_and_bad_input(client):
    for mode in ("keyword", "vector", "hybrid"):
        data = _first_hit(client, "llama", mode=mode, limit=3)
        assert data["mode"] == mode and len(data["hits"]) <= 3
    assert client.get("/api/search", params={"q": "x", "mode": "fuzzy"}).status_code == 422
    assert client.get("/api/search", params={"q": "x", "limit": 0}).status_code == 422
    assert client.get("/api/search", params={"q": "x", "limit": "many"}).json()["detail"].startswith("invalid request")


def test_search_filters_by_tag_and_described(client, web_core):
    meme_id = web_core.store.meme_ids()[3]
    assert client.patch(f"/api/memes/{meme_id}", json={"add_tags": ["classic"]}).status_code == 200
    tagged = client.get("/api/search", params={"tag": "classic"}).json()
    assert [hit["id"] for hit in tagged["hits"]] == [meme_id]
    assert client.get("/api/search", params={"q": "tag:classic"}).json()["hits"][0]["id"] == meme_id
    client.patch(f"/api/memes/{meme_id}", json={"user_description": "a described meme"})
    described = client.get("/api/search", params={"described": "described", "limit": 50}).json()
    assert [hit["id"] for hit in described["hits"]] == [meme_id]


def test_get_meme_and_unknown_ids(client, web_core, web_template):
    _, folder, samples = web_template
    meme_id = web_core.store.meme_ids()[0]
    data = client.get(f"/api/memes/{meme_id}").json()
    assert data["id"] == meme_id and data["folder"] == str(folder) and data["ocr_text"]
    assert client.get("/api/memes/99999").status_code == 404
    assert client.get("/api/memes/abc").status_code == 422


def test_patch_description_and_tags_then_search_finds_it(client, web_core):
    meme_id = web_core.store.meme_ids()[5]
    response = client.patch(f"/api/memes/{meme_id}", json={"user_description": "zebra juggling chainsaws", "tags": ["b", "a"]})
    assert response.status_code == 200
    assert response.json()["user_description"] == "zebra juggling chainsaws"
    assert response.json()["tags"] == ["a", "b"]
    assert _first_hit(client, "zebra juggling", mode="keyword")["hits"][0]["id"] == meme_id
    after = client.patch(f"/api/memes/{meme_id}", json={"remove_tags": ["a"], "add_tags": ["c"]}).json()
    assert after["tags"] == ["b", "c"]
    assert client.patch(f"/api/memes/{meme_id}", json={"tags": ["only"]}).json()["tags"] == ["only"]


def test_patch_rejects_bad_bodies(client, web_core):
    meme_id = web_core.store.meme_ids()[0]
    url = f"/api/memes/{meme_id}"
    assert client.patch(url, json={}).status_code == 422
    assert client.patch(url, json={"colour": "red"}).status_code == 422
    assert client.patch(url, json={"user_description": 5}).status_code == 422
    assert client.patch(url, json={"user_description": "x" * 5000}).status_code == 422
    assert client.patch(url, json={"tags": "not-a-list"}).status_code == 422
    assert client.patch(url, json={"add_tags": [" "]}).status_code == 422
    assert client.patch(url, json=[1, 2]).status_code == 422
    assert client.patch(url, content=b"{not json", headers={"content-type": "application/json"}).status_code == 422
    assert client.patch("/api/memes/99999", json={"user_description": "x"}).status_code == 404
    assert web_core.store.get_meme(meme_id).user_description == ""


def test_tags_autocomplete(client, web_core):
    ids = web_core.store.meme_ids()
    client.patch(f"/api/memes/{ids[0]}", json={"add_tags": ["reaction", "retro"]})
    client.patch(f"/api/memes/{ids[1]}", json={"add_tags": ["reaction"]})
    data = client.get("/api/tags", params={"prefix": "re"}).json()
    assert data["tags"] == [{"name": "reaction", "count": 2, "color": None}, {"name": "retro", "count": 1, "color": None}]
    assert client.get("/api/tags", params={"prefix": "zz"}).json() == {"tags": []}
    client.patch(f"/api/memes/{ids[0]}", json={"remove_tags": ["retro"]})  # its last meme loses it
    assert [t["name"] for t in client.get("/api/tags", params={"prefix": "re"}).json()["tags"]] == ["reaction"]
    unused = client.get("/api/tags", params={"prefix": "re", "unused": "true"}).json()["tags"]
    assert [(t["name"], t["count"]) for t in unused] == [("reaction", 2), ("retro", 0)]
    assert client.get("/api/tags", params={"limit": 0}).status_code == 422


def test_similar_and_duplicates(client, web_core, web_template, tmp_path):
    ids = web_core.store.meme_ids()
    similar = client.get(f"/api/memes/{ids[0]}/similar", params={"limit": 3}).json()
    assert len(similar["similar"]) == 3 and ids[0] not in [s["id"] for s in similar["similar"]]
    assert client.get("/api/memes/99999/similar").status_code == 404
    # An exact copy in another folder is an exact duplicate.
    from memesearch.library.scanner import scan_folder

    _, folder, samples = web_template
    copies = tmp_path / "copies"
    copies.mkdir()
    (copies / "copy.png").write_bytes(samples[0].path.read_bytes())
    scan_folder(web_core.store, web_core.store.add_folder(str(copies)), web_core.settings)
    original = next(i for i in ids if web_core.store.get_meme(i).path == str(samples[0].path))
    copy_id = web_core.store.folder_meme_counts() and max(web_core.store.meme_ids())
    data = client.get(f"/api/memes/{original}/duplicates").json()
    assert data["exact"] == [copy_id]


def test_files_are_served_only_for_registered_memes(client, web_core, web_template):
    _, _, samples = web_template
    by_id = sample_by_id(web_core, samples)
    meme_id, sample = next(iter(by_id.items()))
    files_before = sorted(sample.path.parent.iterdir())
    full = client.get(f"/files/{meme_id}/image")
    assert full.status_code == 200 and full.content == sample.path.read_bytes()
    download = client.get(f"/files/{meme_id}/download")
    assert sample.path.name in download.headers["content-disposition"]
    thumb = client.get(f"/files/{meme_id}/thumb")
    assert thumb.status_code == 200 and thumb.headers["content-type"] == "image/webp"
    cached = list(web_core.settings.thumbnails_dir.rglob("*.webp"))
    assert len(cached) == 1  # generated into the data dir, never next to the user's file
    assert sorted(sample.path.parent.iterdir()) == files_before
    # A meme whose folder was removed (or a path outside the library) is not served.
    web_core.store.remove_folder(web_core.store.list_folders()[0].id)
    assert client.get(f"/files/{meme_id}/image").status_code == 404
    assert client.get("/files/99999/image").status_code == 404
    assert client.get("/files/..%2F..%2Fetc%2Fpasswd/image").status_code in (404, 422)


def test_highlight_escapes_and_marks():
    marked = str(highlight("<b>one does not</b> simply", ["simply", "one"]))
    assert marked == "&lt;b&gt;<mark>one</mark> does not&lt;/b&gt; <mark>simply</mark>"


def test_near_duplicates_are_every_meme_within_the_bits_of_a_full_hash_scan(client, web_core, web_template, tmp_path):
    """The meme page and the API list as near duplicates exactly the memes a plain scan of every
    stored hash finds within NEAR_DUPLICATE_BITS, closest first; re-saved copies scanned after a
    first lookup show up (the kept hash array is reloaded)."""
    from PIL import Image, ImageEnhance

    from memesearch.library.hashing import hamming
    from memesearch.library.scanner import scan_folder
    from memesearch.web.views import NEAR_DUPLICATE_BITS, near_duplicates

    _, _, samples = web_template
    store = web_core.store
    original = next(i for i in store.meme_ids() if store.get_meme(i).path == str(samples[0].path))
    before = near_duplicates(store, store.get_meme(original))  # fills the kept hash array
    copies = tmp_path / "resaved"
    copies.mkdir()
    with Image.open(samples[0].path) as image:
        picture = image.convert("RGB")
    picture.resize((picture.width * 3 // 4, picture.height * 3 // 4)).save(copies / "smaller.jpg", quality=70)
    ImageEnhance.Brightness(picture).enhance(1.1).save(copies / "brighter.png")
    scan_folder(store, store.add_folder(str(copies)), web_core.settings)
    copy_ids = {i for i in store.meme_ids() if store.get_meme(i).path.startswith(str(copies))}

    meme = store.get_meme(original)
    scanned = sorted(((other, hamming(meme.phash, phash)) for other, phash in store.phashes() if other != original),
                     key=lambda item: (item[1], item[0]))
    expected = [(other, bits) for other, bits in scanned if bits <= NEAR_DUPLICATE_BITS]
    found = near_duplicates(store, meme)
    assert found == expected
    assert copy_ids <= {other for other, _ in found} and not copy_ids & {other for other, _ in before}
    api = client.get(f"/api/memes/{original}/duplicates").json()
    assert [(n["id"], n["distance"]) for n in api["near"]] == expected
    page = client.get(f"/memes/{original}").text
    for other, bits in expected:
        assert f'href="/memes/{other}" title="{bits} of 64 bits differ"' in page
