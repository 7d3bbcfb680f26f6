"""Web side of model onboarding and search answers: readiness refusals with a download action,
downloads with progress / cancel / resume through the API, the hidden fake model, totals and
the no-results page."""

from __future__ import annotations

import time

import pytest

from memesearch.ml import download
from tests.hub_server import FakeHub, closed_port_url, private_models_dir
from tests.test_onboarding import BIG, HUB_FILES, HUB_MODELS, REVISION
from tests.web.conftest import copy_library, csrf_client


@pytest.fixture
def hub_home(web_core, monkeypatch):
    private_models_dir(web_core.settings.home)
    (web_core.settings.home / "models.yml").write_text(HUB_MODELS)
    monkeypatch.setenv("HF_ENDPOINT", closed_port_url())
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    download._PROBE_CACHE.clear()
    return web_core.settings.home


def test_describe_all_with_a_missing_model_is_refused_with_a_download_action(client, hub_home):
    before = client.get("/api/jobs").json()["runs"]
    answer = client.post("/api/jobs", json={"kind": "describe", "model": "hub-test"})
    assert answer.status_code == 409
    body = answer.json()
    assert answer.headers["content-type"] == "application/problem+json"
    assert body["type"] == "/problems/model-not-ready" and body["status"] == 409
    assert body["detail"] == "The model hub-test is not downloaded yet."
    assert body["hint"] == "memesearch models pull hub-test"
    assert body["action"] == {"kind": "download", "model": "hub-test", "label": "Download hub-test (about 1 MB)",
                              "size_mb": 1}
    assert "file(s) missing" in body["technical_details"]
    assert client.get("/api/jobs").json()["runs"] == before  # nothing queued


def test_generate_on_a_meme_with_a_missing_model_is_refused_at_once(client, web_core, hub_home):
    meme_id = web_core.store.meme_ids()[0]
    answer = client.post(f"/api/memes/{meme_id}/describe", json={"model": "smolvlm-256m"})
    assert answer.status_code == 409 and answer.json()["action"]["model"] == "smolvlm-256m"


def test_models_page_offers_the_download_with_its_size(client, hub_home):
    page = client.get("/models")
    assert page.status_code == 200
    assert 'data-pull="hub-test"' in page.text and "Download hub-test (about 1 MB)" in page.text
    assert "not downloaded" in page.text
    assert 'data-ready="false"' in page.text  # the describe form knows before anything is started


def test_download_through_the_api_with_progress_cancel_and_resume(client, hub_home, monkeypatch):
    hub = FakeHub("org/hub-test", REVISION, HUB_FILES, bytes_per_s=2_000_000)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    try:
        started = client.post("/api/models/hub-test/pull", json={}).json()
        assert started["state"] == "running"
        deadline = time.monotonic() + 30
        state = started
        while time.monotonic() < deadline:
            state = client.get("/api/models/hub-test/pull").json()
            if state["bytes_done"] and state["bytes_done"] > 100_000:
                break
            time.sleep(0.05)
        assert state["bytes_total"] == len(BIG) + len(HUB_FILES["tokenizer.json"])
        assert 0 < state["percent"] < 100
        client.post("/api/models/hub-test/pull/cancel")
        while (state := client.get("/api/models/hub-test/pull").json())["state"] == "running":
            time.sleep(0.05)
        assert state["state"] == "cancelled" and "resumes" in state["error"]
        kept = state["bytes_done"]
        resumed = client.post("/api/models/hub-test/pull", json={}).json()
        assert resumed["state"] == "running"
        while (state := client.get("/api/models/hub-test/pull").json())["state"] == "running":
            time.sleep(0.05)
    finally:
        hub.close()
    assert state["state"] == "done" and state["percent"] == 100.0
    assert state["files_present"] == state["files_total"] == 2
    ranges = [rng for path, rng in hub.gets() if path.endswith("model.onnx")]
    assert ranges[0] == "" and ranges[-1].startswith("bytes=") and int(ranges[-1][6:-1]) >= kept - 65536
    assert (hub_home / "models" / "hub-test" / "onnx" / "model.onnx").read_bytes() == BIG
    models = {row["id"]: row for row in client.get("/api/models").json()["models"]}
    assert models["hub-test"]["complete"] is True


def test_offline_download_fails_in_one_sentence_with_details(client, hub_home):
    client.post("/api/models/hub-test/pull", json={})
    while (state := client.get("/api/models/hub-test/pull").json())["state"] == "running":
        time.sleep(0.05)
    assert state["state"] == "failed"
    assert "\n" not in state["error"] and "unreachable" in state["error"]
    assert "--from" in state["details"]


def test_fake_model_is_hidden_from_the_web_without_dev_mode(web_template, tmp_path, monkeypatch):
    from memesearch.web import create_app

    monkeypatch.delenv("MEMESEARCH_DEV")
    core = copy_library(web_template, tmp_path / "data")
    try:
        with csrf_client(create_app(core=core)) as client:
            ids = [row["id"] for row in client.get("/api/models").json()["models"]]
            assert "fake" not in ids and "smolvlm-256m" in ids
            assert 'value="fake"' not in client.get("/models").text
            meme_id = core.store.meme_ids()[0]
            assert 'value="fake"' not in client.get(f"/memes/{meme_id}").text
            assert client.post("/api/jobs", json={"kind": "describe", "model": "fake"}).status_code == 404
    finally:
        core.close()


# ----------------------------------------------------------------------------- search answers


@pytest.mark.parametrize("mode", ["hybrid", "vector", "keyword"])
def test_nonsense_finds_nothing_and_says_so(client, mode):
    body = client.get("/api/search", params={"q": "xyzzyqwv", "mode": mode}).json()
    assert body["hits"] == [] and body["total"] == 0 and body["total_is_exact"] is True
    page = client.get("/", params={"q": "xyzzyqwv", "mode": mode})
    assert "No memes match" in page.text and "xyzzyqwv" in page.text
    others = {"hybrid", "vector", "keyword"} - {mode}
    assert all(f"mode={other}" in page.text for other in others)


def test_no_results_page_suggests_fewer_words(client):
    page = client.get("/", params={"q": "printer zzqqxx wwvvkk jjhhgg", "mode": "keyword", "part": "results"})
    assert "No memes match" in page.text and "Use fewer words" in page.text


def test_totals_are_reported(client, web_core):
    everything = client.get("/api/search", params={"q": "", "limit": 5}).json()
    assert len(everything["hits"]) == 5
    assert everything["total"] == len(web_core.store.meme_ids()) and everything["total_is_exact"] is True
    page = client.get("/", params={"q": ""})
    assert f'<span id="result-count">{len(web_core.store.meme_ids())}</span> results' in page.text
