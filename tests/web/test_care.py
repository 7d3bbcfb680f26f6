"""Library care over HTTP: tag management, removing memes, duplicate uploads, the Settings page."""

from __future__ import annotations

import json
import stat

import pytest
from fastapi.testclient import TestClient

from memesearch.library.indexing import run_index
from memesearch.web import create_app
from tests.web.helpers import image_bytes, wait_for_run


def _tags(client) -> dict:
    return {t["name"]: (t["count"], t["color"]) for t in client.get("/api/tag-details").json()["tags"]}


def _form_token(client) -> str:
    return client.cookies["ms_csrf"]


# -- tags --------------------------------------------------------------------------------
def test_tag_rename_merge_colour_delete_and_cleanup_api(client, web_core):
    a, b, c = web_core.store.meme_ids()[:3]
    client.patch(f"/api/memes/{a}", json={"add_tags": ["classic", "cat"]})
    client.patch(f"/api/memes/{b}", json={"add_tags": ["cats"]})
    client.patch(f"/api/memes/{c}", json={"add_tags": ["doomed"]})
    web_core.store.create_tag("lonely")

    renamed = client.patch("/api/tags/classic", json={"name": "vintage", "color": "blue"})
    assert renamed.status_code == 200 and renamed.json()["result"] == "renamed"
    merged = client.patch("/api/tags/cat", json={"name": "Cats"})
    assert merged.json()["result"] == "merged"
    assert _tags(client) == {"cats": (2, None), "doomed": (1, None), "lonely": (0, None), "vintage": (1, "blue")}
    assert len(client.get("/api/search", params={"q": "tag:cats", "limit": 20}).json()["hits"]) == 2
    assert web_core.store.get_meme(a).tags == ["cats", "vintage"]

    deleted = client.delete("/api/tags/doomed")
    assert deleted.status_code == 200 and deleted.json()["memes"] == 1
    assert web_core.store.get_meme(c).tags == []
    assert client.post("/api/tag-cleanup").json()["deleted"] == ["lonely"]
    assert "lonely" not in _tags(client)

    for bad, message in [({"name": "x" * 51}, "too long"), ({"name": "a\tb"}, "control characters"),
                         ({"name": "   "}, "empty"), ({"color": "#f00"}, "colour"), ({"colour": "red"}, "unknown")]:
        response = client.patch("/api/tags/cats", json=bad)
        assert response.status_code == 422 and message in response.json()["detail"], (bad, response.text)
    assert client.patch("/api/tags/nope", json={"name": "x"}).status_code == 404
    assert client.delete("/api/tags/nope").status_code == 404
    too_long = client.patch(f"/api/memes/{a}", json={"add_tags": ["y" * 51]})
    assert too_long.status_code == 422 and "at most 50" in too_long.json()["detail"]


def test_tag_with_slash_and_unicode_in_url(client, web_core):
    meme = web_core.store.meme_ids()[0]
    client.patch(f"/api/memes/{meme}", json={"add_tags": ["AC/DC Über"]})
    assert client.patch("/api/tags/AC%2FDC%20%C3%9Cber", json={"color": "red"}).status_code == 200
    assert _tags(client)["AC/DC Über"] == (1, "red")


def test_tags_page_forms_need_csrf_and_work(client, web_core):
    a, b = web_core.store.meme_ids()[:2]
    web_core.store.add_tags(a, ["old name", "unused-soon"])
    web_core.store.add_tags(b, ["target"])
    web_core.store.remove_tags(a, ["unused-soon"])
    page = client.get("/tags")
    assert page.status_code == 200 and "#old name" in page.text and "Clean unused tags (1)" in page.text

    bare = TestClient(client.app)
    assert bare.post("/tags/rename", data={"name": "old name", "new_name": "x"}).status_code == 403
    token = _form_token(client)
    done = client.post("/tags/rename", data={"csrf_token": token, "name": "old name", "new_name": "target"},
                       follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"].startswith("/tags?notice=Merged")
    assert web_core.store.get_meme(a).tags == ["target"]
    refused = client.post("/tags/rename", data={"csrf_token": token, "name": "target", "new_name": "z" * 60})
    assert refused.status_code == 422 and "too long" in refused.text and 'id="tag-admin"' in refused.text
    client.post("/tags/color", data={"csrf_token": token, "name": "target", "color": "green"})
    assert web_core.store.tag_colors() == {"target": "green"}
    assert 'data-color="green"' in client.get("/", params={"q": ""}).text  # chips and results carry the colour
    assert 'data-color="green"' in client.get(f"/memes/{a}").text
    assert client.post("/tags/color", data={"csrf_token": token, "name": "target", "color": "chartreuse"}).status_code == 422
    client.post("/tags/cleanup", data={"csrf_token": token})
    assert [t.name for t in web_core.store.list_tag_details()] == ["target"]
    client.post("/tags/delete", data={"csrf_token": token, "name": "target"})
    assert web_core.store.list_tag_details() == [] and web_core.store.get_meme(b).tags == []
    assert client.post("/tags/delete", data={"csrf_token": token, "name": "target"}).status_code == 404


def test_unused_tags_leave_filter_chips(client, web_core):
    meme = web_core.store.meme_ids()[0]
    web_core.store.add_tags(meme, ["classic"])
    assert 'value="classic"' in client.get("/").text
    client.patch(f"/api/memes/{meme}", json={"remove_tags": ["classic"]})
    assert 'value="classic"' not in client.get("/").text
    assert "#classic" in client.get("/tags").text  # still managed on the Tags page


# -- removing memes -------------------------------------------------------------------------
def test_remove_one_meme_keeps_user_file_and_rescan_skips_it(client, web_core):
    meme = web_core.store.get_meme(web_core.store.meme_ids()[0])
    before = open(meme.path, "rb").read()
    response = client.delete(f"/api/memes/{meme.id}")
    assert response.status_code == 200
    assert response.json() | {"excluded": None} == {"removed": [meme.id], "not_found": [], "files_deleted": [],
                                                     "excluded": None, "errors": []}
    assert open(meme.path, "rb").read() == before  # the user's file is untouched
    assert client.get(f"/api/memes/{meme.id}").status_code == 404
    assert client.delete(f"/api/memes/{meme.id}").status_code == 404
    run_index(web_core)  # a rescan does not bring it back
    assert meme.path not in {m.path for m in web_core.store.get_memes(web_core.store.meme_ids())}
    assert web_core.store.excluded_paths() == {meme.path}


def test_bulk_remove_deletes_only_uploaded_files(client, web_core, worker):
    uploaded = client.post("/api/uploads", files=[("files", ("fresh.png", image_bytes("fresh upload"), "image/png"))]).json()
    wait_for_run(client, uploaded["run"]["id"])
    upload_path = web_core.settings.uploads_dir / "fresh.png"
    upload_id = next(m.id for m in web_core.store.get_memes(web_core.store.meme_ids()) if m.path == str(upload_path))
    folder_meme = web_core.store.get_meme(web_core.store.meme_ids()[0])

    bare = TestClient(client.app)
    assert bare.post("/api/memes/remove", json={"ids": [upload_id]}).status_code == 403
    report = client.post("/api/memes/remove", json={"ids": [upload_id, folder_meme.id, 987654]}).json()
    assert sorted(report["removed"]) == sorted([upload_id, folder_meme.id]) and report["not_found"] == [987654]
    assert report["files_deleted"] == [str(upload_path)] and not upload_path.exists()
    assert report["excluded"] == [folder_meme.path]
    assert open(folder_meme.path, "rb").read()  # still there
    for bad in [{}, {"ids": []}, {"ids": ["1"]}, {"ids": [True]}, {"ids": list(range(1001))}]:
        assert client.post("/api/memes/remove", json=bad).status_code == 422, bad


def test_remove_never_deletes_outside_uploads(client, web_core, tmp_path):
    """An upload row whose path escapes the uploads folder (a symlinked sub-folder) keeps its target."""
    outside = tmp_path / "precious"
    outside.mkdir()
    precious = outside / "keep.png"
    precious.write_bytes(image_bytes("keep me"))
    uploads = web_core.settings.uploads_dir
    uploads.mkdir(parents=True, exist_ok=True)
    (uploads / "linked").symlink_to(outside, target_is_directory=True)
    from memesearch.store.models import FileRecord

    meme_id = web_core.store.insert_file(FileRecord(path=str(uploads / "linked" / "keep.png"), folder_id=None,
                                                    size=1, mtime=1.0, sha256="zz", format="png"))
    report = client.delete(f"/api/memes/{meme_id}").json()
    assert report["files_deleted"] == [] and precious.exists()


def test_meme_page_remove_form(client, web_core):
    meme = web_core.store.get_meme(web_core.store.meme_ids()[0])
    page = client.get(f"/memes/{meme.id}")
    assert 'id="remove-meme"' in page.text and "stays on your disk" in page.text
    assert TestClient(client.app).post(f"/memes/{meme.id}/remove").status_code == 403
    done = client.post(f"/memes/{meme.id}/remove", data={"csrf_token": _form_token(client)}, follow_redirects=False)
    assert done.status_code == 303 and done.headers["location"].startswith("/?notice=Removed")
    assert client.get(f"/api/memes/{meme.id}").status_code == 404


# -- duplicate uploads ------------------------------------------------------------------------
def test_uploading_known_bytes_links_to_existing_meme(client, web_core, web_template):
    meme = web_core.store.get_meme(web_core.store.meme_ids()[0])
    data = open(meme.path, "rb").read()
    response = client.post("/api/uploads", files=[("files", ("again.png", data, "image/png"))]).json()
    entry = response["files"][0]
    assert entry["ok"] and entry["duplicate"] and entry["existing_id"] == meme.id
    assert entry["existing_url"] == f"/memes/{meme.id}" and entry["message"] == "already in your library"
    assert entry["saved_as"] is None and response["saved"] == 0 and response["already"] == 1 and response["run"] is None
    assert not any(web_core.settings.uploads_dir.iterdir())  # nothing written
    # The same new bytes twice before indexing: the second links to the first upload.
    fresh = image_bytes("brand new")
    first = client.post("/api/uploads?index=false", files=[("files", ("new.png", fresh, "image/png"))]).json()["files"][0]
    second = client.post("/api/uploads?index=false", files=[("files", ("new2.png", fresh, "image/png"))]).json()["files"][0]
    assert first["saved_as"] == "new.png" and second["duplicate"] and "already uploaded as new.png" in second["message"]
    assert [p.name for p in web_core.settings.uploads_dir.iterdir()] == ["new.png"]


# -- settings ---------------------------------------------------------------------------------
def test_settings_api_saves_endpoint_and_never_returns_the_key(client, web_core, monkeypatch):
    monkeypatch.setattr(web_core.settings, "dev", False)  # onboard's rule reads Settings.dev (MEMESEARCH_DEV at start)
    data = client.get("/api/settings").json()
    assert "fake" not in data["caption_models"] and "openai" in data["caption_models"]
    saved = client.put("/api/settings", json={"caption_model": "openai", "openai": {
        "base_url": "http://localhost:11434/v1/", "model": "llava", "api_key": "sk-secret-123"}})
    assert saved.status_code == 200, saved.text
    assert saved.json()["openai"] == {"base_url": "http://localhost:11434/v1", "model": "llava", "api_key_set": True}
    assert "sk-secret-123" not in saved.text and "sk-secret-123" not in client.get("/api/settings").text
    assert "sk-secret-123" not in client.get("/settings").text
    path = web_core.settings.home / "settings.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text())["openai"]["api_key"] == "sk-secret-123"
    assert web_core.settings.caption_model == "openai"
    # An empty key keeps the saved one; remove_key clears it.
    client.put("/api/settings", json={"openai": {"model": "llava:13b", "api_key": ""}})
    assert json.loads(path.read_text())["openai"] == {"base_url": "http://localhost:11434/v1", "model": "llava:13b",
                                                       "api_key": "sk-secret-123"}
    assert client.put("/api/settings", json={"openai": {"remove_key": True}}).json()["openai"]["api_key_set"] is False
    for bad in [{"openai": {"base_url": "ftp://x"}}, {"openai": {"base_url": "javascript:alert(1)"}},
                {"openai": {"base_url": "not a url"}},
                {"openai": {"api_key": "two words"}}, {"openai": "x"}, {"other": 1}, {"openai": {"model": "a\nb"}}]:
        assert client.put("/api/settings", json=bad).status_code == 422, bad
    for unknown in ("fake", "nope"):  # an unknown (or hidden) model is a 404, as on the models API
        assert client.put("/api/settings", json={"caption_model": unknown}).status_code == 404, unknown


def test_fake_model_offered_only_in_dev_mode(client, monkeypatch):
    monkeypatch.setenv("MEMESEARCH_DEV", "1")
    assert "fake" in client.get("/api/settings").json()["caption_models"]
    assert client.put("/api/settings", json={"caption_model": "fake"}).status_code == 200


def test_settings_page_form(client, web_core):
    token = _form_token(client)
    assert TestClient(client.app).post("/settings", data={"base_url": "https://x.example/v1"}).status_code == 403
    done = client.post("/settings", data={"csrf_token": token, "caption_model": "openai", "base_url": "https://api.example.com/v1",
                                          "model": "m1", "api_key": "k-1"}, follow_redirects=False)
    assert done.status_code == 303
    page = client.get("/settings").text
    assert "A key is set" in page and "k-1" not in page and 'value="https://api.example.com/v1"' in page
    refused = client.post("/settings", data={"csrf_token": token, "base_url": "file:///etc/passwd", "model": "m2"})
    assert refused.status_code == 422 and "http:// or https://" in refused.text and 'value="m2"' in refused.text
    client.post("/settings/remove-key", data={"csrf_token": token})
    assert "No key set" in client.get("/settings").text


def test_saved_endpoint_is_used_by_the_openai_model(web_core):
    from memesearch import saved_settings
    from memesearch.ml.api_backend import ApiCaptioner
    from memesearch.ml.chain import api_source_for
    from memesearch.ml.availability import would_run
    from memesearch.ml.registry import get_spec

    spec = get_spec("openai", web_core.settings.home)
    saved_settings.save_api_endpoint(web_core.settings.home, base_url="http://127.0.0.1:9/v1", model="llava",
                                     api_key="sk-from-settings")
    source = api_source_for(spec, web_core.settings)
    assert (source.base_url, source.model) == ("http://127.0.0.1:9/v1", "llava")
    assert "sk-from-settings" not in repr(source) and "sk-from-settings" not in source.model_dump_json()
    assert ApiCaptioner(source)._api_key() == "sk-from-settings"
    assert would_run(spec, web_core.settings)[0] == "api"


@pytest.mark.parametrize("url", ["/tags", "/settings"])
def test_new_pages_are_in_the_navigation(client, url):
    page = client.get(url)
    assert page.status_code == 200 and f'href="{url}" aria-current="page"' in page.text
