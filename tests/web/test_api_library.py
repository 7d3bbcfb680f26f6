"""JSON API for uploads and folders, with the in-process worker indexing for real."""

from __future__ import annotations

import pytest

from memesearch.library.samples import render_sample_memes
from tests.web.helpers import image_bytes, wait_for_run


@pytest.fixture(scope="module")
def upload_samples(tmp_path_factory, web_template):
    """Three rendered memes whose captions are not in the library already."""
    known = {s.text for s in web_template[2]}
    rendered = render_sample_memes(tmp_path_factory.mktemp("to_upload"), count=10, seed=23)
    return [s for s in rendered if s.text not in known][:3]


def test_upload_saves_indexes_and_finds(client, web_core, worker, upload_samples):
    files = [("files", (s.path.name, s.path.read_bytes(), "application/octet-stream")) for s in upload_samples]
    response = client.post("/api/uploads", files=files)
    assert response.status_code == 200, response.text
    data = response.json()
    assert data["saved"] == 3 and all(f["ok"] for f in data["files"])
    run = wait_for_run(client, data["run"]["id"])
    assert run["state"] == "done" and run["failed"] == 0
    uploads = web_core.settings.uploads_dir
    assert sorted(p.name for p in uploads.iterdir()) == sorted(s.path.name for s in upload_samples)
    for sample in upload_samples:
        hits = client.get("/api/search", params={"q": sample.text, "limit": 1}).json()["hits"]
        assert hits[0]["path"] == str(uploads / sample.path.name)


def test_upload_never_overwrites_and_fixes_extensions(client, web_core):
    first = client.post("/api/uploads?index=false", files=[("files", ("cat.png", image_bytes("one"), "image/png"))]).json()
    second = client.post("/api/uploads?index=false", files=[("files", ("cat.png", image_bytes("two"), "image/png"))]).json()
    jpeg = client.post("/api/uploads?index=false", files=[("files", ("../../evil.png", image_bytes("three", "JPEG"), "image/png"))]).json()
    assert first["files"][0]["saved_as"] == "cat.png" and first["run"] is None
    assert second["files"][0]["saved_as"] == "cat-1.png"
    assert jpeg["files"][0]["saved_as"] == "evil.jpg"  # format by content; no path escapes
    folder = web_core.settings.uploads_dir
    assert (folder / "cat.png").read_bytes() == image_bytes("one")
    assert (folder / "cat-1.png").read_bytes() == image_bytes("two")
    assert sorted(p.name for p in folder.iterdir()) == ["cat-1.png", "cat.png", "evil.jpg"]


def test_upload_rejects_non_images_and_limits(client, web_core):
    web_core.settings.max_upload_mb = 0.01
    web_core.settings.max_upload_files = 2
    response = client.post("/api/uploads?index=false", files=[
        ("files", ("notes.png", b"this is text, not a png", "image/png")),
        ("files", ("big.png", b"\x89PNG" + b"0" * 20_000, "image/png")),
    ])
    results = response.json()["files"]
    assert [r["ok"] for r in results] == [False, False]
    assert "not an image" in results[0]["error"] and "limit" in results[1]["error"]
    too_many = [("files", (f"{i}.png", image_bytes(str(i)), "image/png")) for i in range(3)]
    assert client.post("/api/uploads", files=too_many).status_code == 422
    assert client.post("/api/uploads", json={"files": []}).status_code == 422
    huge = client.post("/api/uploads", content=b"x" * 1_100_000,
                       headers={"content-type": "multipart/form-data; boundary=x"})
    assert huge.status_code == 413
    assert client.post("/api/uploads", files=[("other", ("a.png", image_bytes("a"), "image/png"))]).status_code == 422
    assert not any(web_core.settings.uploads_dir.iterdir())


def test_folders_add_rescan_update_remove(client, web_core, worker, tmp_path):
    folder = tmp_path / "more memes"
    folder.mkdir()
    render_sample_memes(folder, count=2, seed=31)
    (folder / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n broken")
    response = client.post("/api/folders", json={"path": str(folder), "auto_scan_minutes": 15})
    assert response.status_code == 200, response.text
    added = response.json()
    assert added["folder"]["auto_scan_minutes"] == 15
    run = wait_for_run(client, added["run"]["id"])
    assert run["state"] == "done"
    listed = {f["path"]: f for f in client.get("/api/folders").json()["folders"]}
    entry = listed[str(folder)]
    assert entry["memes"] == 2
    assert [e["path"] for e in entry["last_scan"]["errors"]] == [str(folder / "broken.png")]
    render_sample_memes(folder / "new", count=1, seed=32)
    rescan = client.post(f"/api/folders/{entry['id']}/rescan").json()
    wait_for_run(client, rescan["run"]["id"])
    assert {f["path"]: f for f in client.get("/api/folders").json()["folders"]}[str(folder)]["memes"] == 3
    assert client.patch(f"/api/folders/{entry['id']}", json={"auto_scan_minutes": 0}).json()["folder"]["auto_scan_minutes"] == 0
    assert client.delete(f"/api/folders/{entry['id']}").json() == {"removed": str(folder)}
    assert str(folder) not in [f["path"] for f in client.get("/api/folders").json()["folders"]]


def test_folder_validation(client, tmp_path):
    a_file = tmp_path / "file.txt"
    a_file.write_text("x")
    assert client.post("/api/folders", json={"path": str(tmp_path / "nope")}).status_code == 422
    assert client.post("/api/folders", json={"path": str(a_file)}).status_code == 422
    assert client.post("/api/folders", json={"path": "relative/dir"}).status_code == 422
    assert client.post("/api/folders", json={"path": 3}).status_code == 422
    assert client.post("/api/folders", json={"path": str(tmp_path), "auto_scan_minutes": -1}).status_code == 422
    existing = client.get("/api/folders").json()["folders"][0]
    assert client.post("/api/folders", json={"path": existing["path"], "scan": False}).status_code == 422
    assert client.patch(f"/api/folders/{existing['id']}", json={"auto_scan_minutes": "often"}).status_code == 422
    assert client.patch("/api/folders/999", json={"auto_scan_minutes": 5}).status_code == 404
    assert client.delete("/api/folders/999").status_code == 404
    assert client.post("/api/folders/999/rescan").status_code == 404


def _folder_entry(client, path) -> dict:
    return {f["path"]: f for f in client.get("/api/folders").json()["folders"]}[str(path)]


def test_folder_removed_and_added_again_brings_its_memes_back(client, web_core, worker, tmp_path):
    folder = tmp_path / "again"
    render_sample_memes(folder, count=2, seed=41)
    added = client.post("/api/folders", json={"path": str(folder)}).json()
    assert wait_for_run(client, added["run"]["id"])["state"] == "done"
    meme_id = next(i for i in web_core.store.meme_ids() if web_core.store.get_meme(i).path.startswith(str(folder)))
    web_core.store.add_tags(meme_id, ["mine"])
    web_core.store.set_user_description(meme_id, "my own words")
    assert client.delete(f"/api/folders/{added['folder']['id']}").status_code == 200
    assert client.get(f"/files/{meme_id}/image").status_code == 404  # not in the library any more
    hits = client.get("/api/search", params={"q": "tag:mine"}).json()["hits"]
    assert hits == []
    again = client.post("/api/folders", json={"path": str(folder)})
    assert again.status_code == 200, again.text
    assert wait_for_run(client, again.json()["run"]["id"])["state"] == "done"
    assert _folder_entry(client, folder)["memes"] == 2
    hits = client.get("/api/search", params={"q": "tag:mine"}).json()["hits"]
    assert [h["id"] for h in hits] == [meme_id] and hits[0]["user_description"] == "my own words"
    assert client.get(f"/files/{meme_id}/image").status_code == 200


@pytest.mark.parametrize("outer_first", [True, False])
def test_nested_folders(client, web_core, worker, tmp_path, outer_first):
    outer = tmp_path / "outer"
    render_sample_memes(outer, count=1, seed=43)
    render_sample_memes(outer / "inner", count=2, seed=44)
    for path in ([outer, outer / "inner"] if outer_first else [outer / "inner", outer]):
        response = client.post("/api/folders", json={"path": str(path)})
        assert response.status_code == 200, response.text
        assert wait_for_run(client, response.json()["run"]["id"])["state"] == "done"
    assert (_folder_entry(client, outer)["memes"], _folder_entry(client, outer / "inner")["memes"]) == (1, 2)
    for entry in (_folder_entry(client, outer), _folder_entry(client, outer / "inner")):
        rescan = client.post(f"/api/folders/{entry['id']}/rescan")
        assert rescan.status_code == 200 and wait_for_run(client, rescan.json()["run"]["id"])["state"] == "done"
    inner = _folder_entry(client, outer / "inner")
    assert client.delete(f"/api/folders/{inner['id']}").status_code == 200
    assert _folder_entry(client, outer)["memes"] == 3  # the outer folder still reaches them


def test_data_dir_samples_are_served_its_own_files_never(client, web_core, worker):
    """The demo's samples live in the data dir: they are memes and are served; a meme row that
    points at the data dir's own files (an old version's index) is not."""
    samples = web_core.settings.home / "samples"
    render_sample_memes(samples, count=1, seed=45)
    added = client.post("/api/folders", json={"path": str(samples)}).json()
    assert wait_for_run(client, added["run"]["id"])["state"] == "done"
    meme_id = next(i for i in web_core.store.meme_ids() if web_core.store.get_meme(i).path.startswith(str(samples)))
    assert client.get(f"/files/{meme_id}/image").status_code == 200
    assert client.get(f"/files/{meme_id}/thumb").status_code == 200
    thumbs = sorted(p for p in web_core.settings.home.rglob("*.webp") if "samples" not in p.parts)
    assert thumbs  # the thumbnail just made
    assert client.post("/api/folders", json={"path": str(thumbs[0].parent)}).status_code == 422
    from memesearch.store.models import FileRecord

    forged = web_core.store.insert_file(FileRecord(path=str(thumbs[0]), folder_id=added["folder"]["id"], size=1, mtime=1.0))
    assert client.get(f"/files/{forged}/image").status_code == 404
