"""The hostile corpus through the web upload API (POST /api/uploads), then indexed by the job worker.

Each bad file gets a per-file error with its reason, each good one is saved under a safe name
inside the uploads folder and indexed; names never escape the folder and never overwrite.
"""

from __future__ import annotations

import time

import pytest

from tests.conftest import make_core
from tests.hostile.corpus import Case, upload_cases
from tests.reliability import tried
from tests.web.conftest import csrf_client
from tests.web.helpers import image_bytes

CASES = upload_cases()
pytestmark = pytest.mark.timeout(240)


@pytest.fixture(scope="module")
def web(tmp_path_factory, shared_models_dir):
    from memesearch.jobs.worker import start_in_process
    from memesearch.web import create_app

    core = make_core(tmp_path_factory.mktemp("hostile-web") / "data", shared_models_dir, threads=1)
    worker = start_in_process(core, concurrency=1)
    try:
        with csrf_client(create_app(core=core)) as client:
            yield core, client
    finally:
        worker.stop()
        core.close()


def _upload(client, cases, index: bool, basename: bool = True) -> dict:
    """One multipart request; ``basename=False`` sends each case's name as is (paths included)."""
    files = [("files", (case.name.rsplit("/", 1)[-1] if basename else case.name, case.data,
                        "application/octet-stream")) for case in cases]
    response = client.post(f"/api/uploads?index={str(index).lower()}", files=files)
    # 200 when something was saved; 422 (never 500) with every file's reason when nothing was.
    any_good = any(case.upload_expected == "indexed" for case in cases)
    assert response.status_code == (200 if any_good else 422), response.text
    body = response.json()
    if not any_good:
        assert body["saved"] == 0 and "Traceback" not in body["detail"] and len(body["detail"]) > 10
    return body


def _wait_for_run(client, run_id: int) -> dict:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        run = client.get(f"/api/jobs/{run_id}").json()
        run = run.get("run", run)
        if run["state"] in ("done", "failed", "cancelled"):
            return run
        time.sleep(0.2)
    raise AssertionError(f"run {run_id} did not finish")


def test_every_hostile_upload_is_answered_and_good_ones_get_indexed(web):
    core, client = web
    results = []
    for start in range(0, len(CASES), 25):
        results += _upload(client, CASES[start : start + 25], index=False)["files"]
    uploads = core.settings.uploads_dir.resolve()
    saved = []
    for case, result in zip(CASES, results, strict=True):
        if case.upload_expected == "indexed":
            assert result["ok"], (case.name, result)
            path = (uploads / result["saved_as"])
            assert path.parent == uploads and path.read_bytes() == case.data
            saved.append(str(path))
        else:
            assert not result["ok"] and result["saved_as"] is None, (case.name, result)
            assert case.upload_expected.split(":", 1)[1].lower() in result["error"].lower(), (case.name, result)
    assert len(set(saved)) == len(saved), "two uploads never share a file"
    tried(len(CASES))
    assert sorted(p.name for p in uploads.iterdir() if p.name.startswith(".")) == [], "no temp file left behind"

    run = _wait_for_run(client, client.post("/api/uploads/index").json()["run"]["id"])
    assert run["state"] == "done", run
    paths = {meme.path: meme for meme in core.store.get_memes(core.store.meme_ids())}
    for path in saved:
        assert paths[path].status == "ok" and paths[path].ocr_engine, path
    assert core.store.counts()["errors"] == 0, "bad uploads never reach the library"


def test_each_damaged_file_alone_gets_a_4xx_with_its_reason(web):
    """The page uploads one file per request: a file Pillow chokes on answers 422, never 500."""
    core, client = web
    damaged = [case for case in CASES if case.name.startswith("broken/") and case.upload_expected != "indexed"]
    assert len(damaged) >= 6
    for case in damaged:
        body = _upload(client, [case], index=False)
        assert case.reason.lower() in body["detail"].lower(), (case.name, body)
        assert body["files"][0]["ok"] is False and body["run"] is None
    tried(len(damaged))
    assert client.get("/healthz").status_code == 200, "the app keeps serving"


def test_upload_names_cannot_escape_or_overwrite(web, tmp_path):
    core, client = web
    names = ["../../../../tmp/escape.png", "/etc/cron.d/evil.png", "..\\..\\evil.png", "%2e%2e%2fevil.png",
             "same.png", "same.png", ".hidden.png", "", "con.png\x00.jpg"]
    # Different bytes per file: identical bytes are not saved twice (they link to the first upload).
    body = _upload(client, [Case(name, "indexed", data=image_bytes(f"upload {i}")) for i, name in enumerate(names)],
                   index=False, basename=False)
    uploads = core.settings.uploads_dir.resolve()
    saved = [uploads / item["saved_as"] for item in body["files"]]
    assert all(item["ok"] for item in body["files"])
    tried(len(names))
    assert all(path.parent == uploads and path.is_file() for path in saved)
    assert len(set(saved)) == len(saved), "the second same.png does not overwrite the first"
    assert not any(path.name.startswith(".") for path in saved), "an upload cannot hide from the scanner"
    assert not (tmp_path / "escape.png").exists()
    assert not list(uploads.parent.glob("evil*")) and not list(uploads.parent.parent.glob("escape*"))
