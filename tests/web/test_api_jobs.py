"""JSON API for runs (describe, cancel, retry, SSE progress) and caption models."""

from __future__ import annotations

import json

from tests.web.helpers import wait_for_run


def test_bulk_describe_with_the_fake_model(client, web_core, worker):
    total = len(web_core.store.meme_ids())
    run = client.post("/api/jobs", json={"kind": "describe", "model": "fake"}).json()
    assert run["kind"] == "describe" and run["model"] == "fake" and run["total"] == total
    with client.stream("GET", f"/api/jobs/{run['id']}/events") as stream:
        events = [line for line in stream.iter_lines() if line.startswith("data: ")]
    final = json.loads(events[-1].removeprefix("data: "))
    assert final["state"] == "done" and final["done"] == total
    assert client.get("/api/jobs").json()["runs"][0]["id"] == run["id"]
    meme = client.get(f"/api/memes/{web_core.store.meme_ids()[0]}").json()
    assert meme["descriptions"][0]["model_id"] == "fake" and meme["descriptions"][0]["backend"] == "fake"
    # Nothing left undescribed: a second run has nothing to do.
    again = client.post("/api/jobs", json={"kind": "describe", "model": "fake"}).json()
    assert again["total"] == 0 and again["state"] == "done"


def test_regenerate_one_meme(client, web_core, worker):
    meme_id = web_core.store.meme_ids()[1]
    run = client.post(f"/api/memes/{meme_id}/describe", json={"model": "fake"}).json()
    assert run["total"] == 1
    assert wait_for_run(client, run["id"])["state"] == "done"
    assert [d["model_id"] for d in client.get(f"/api/memes/{meme_id}").json()["descriptions"]] == ["fake"]
    assert client.post(f"/api/memes/{meme_id}/describe", json={"model": "no-such-model"}).status_code == 404
    assert client.post("/api/memes/99999/describe", json={}).status_code == 404


def test_cancel_and_retry(client, web_core):
    # No worker: the run stays queued, so cancelling it is deterministic.
    run = client.post("/api/jobs", json={"kind": "describe", "model": "fake"}).json()
    cancelled = client.post(f"/api/jobs/{run['id']}/cancel").json()
    assert cancelled["state"] == "cancelled"
    retried = client.post(f"/api/jobs/{run['id']}/retry").json()  # nothing failed: nothing to retry
    assert retried["state"] == "cancelled"


def test_jobs_bad_input(client):
    assert client.post("/api/jobs", json={"kind": "dance"}).status_code == 422
    assert client.post("/api/jobs", json={"kind": "describe", "meme_ids": "all"}).status_code == 422
    assert client.post("/api/jobs", json={"kind": "index", "folder_id": "x"}).status_code == 422
    assert client.post("/api/jobs", json={"kind": "index", "folder_id": 999}).status_code == 404
    assert client.get("/api/jobs/999").status_code == 404
    assert client.get("/api/jobs/999/events").status_code == 404
    assert client.post("/api/jobs/999/cancel").status_code == 404
    assert client.post("/api/jobs/999/retry").status_code == 404
    assert client.get("/api/jobs", params={"limit": 0}).status_code == 422


def test_models_list_default_and_check(client, web_core):
    data = client.get("/api/models").json()
    rows = {row["id"]: row for row in data["models"]}
    assert rows["fake"]["backend"] == "fake" and rows[data["default"]]["default"]
    assert client.post("/api/models/default", json={"model": "fake"}).json() == {"default": "fake"}
    assert web_core.settings.caption_model == "fake"
    # The choice survives a restart of the app.
    from memesearch.config import Settings
    from memesearch.web import preferences

    fresh = Settings(home=web_core.settings.home)
    preferences.apply(fresh)
    assert fresh.caption_model == "fake"
    assert client.post("/api/models/default", json={"model": "nope"}).status_code == 404
    assert client.post("/api/models/default", json={}).status_code == 422


def test_pull_fails_fast_offline_with_the_reason(client, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    started = client.post("/api/models/smolvlm-256m/pull", json={"dtype": "int8"}).json()
    assert started["model"] == "smolvlm-256m" and started["files_total"] > 0
    import time

    for _ in range(100):
        state = client.get("/api/models/smolvlm-256m/pull").json()
        if state["state"] != "running":
            break
        time.sleep(0.1)
    assert state["state"] == "failed" and "HF_HUB_OFFLINE" in state["error"]
    assert client.post("/api/models/fake/pull").status_code == 422
    assert client.post("/api/models/unknown/pull").status_code == 404
    assert client.post("/api/models/smolvlm-256m/pull", json={"dtype": 8}).status_code == 422


def test_models_check_matrix(client):
    import time

    assert client.post("/api/models/check").json()["state"] in ("running", "done")
    for _ in range(300):
        state = client.get("/api/models/check").json()
        if state["state"] != "running":
            break
        time.sleep(0.1)
    assert state["state"] == "done"
    fake = [row for row in state["result"] if row["model"] == "fake"]
    assert fake and fake[0]["loads"] and fake[0]["ms_per_image"] is not None


def test_estimate_a_bulk_describe_run_before_starting_it(client, web_core, worker):
    total = len(web_core.store.meme_ids())
    first = client.get("/api/jobs/estimate", params={"model": "fake"}).json()
    # Never run here: the model's typical time from models.yml.
    assert first["count"] == total and first["basis"] == "typical" and first["seconds_per_meme"] == 0.05
    assert first["text"].startswith(f"{total} memes, about less than a minute with fake")
    default = client.get("/api/jobs/estimate").json()
    assert default["model"] == web_core.settings.caption_model
    assert client.get("/api/jobs/estimate", params={"model": "no-such-model"}).status_code == 404
    # Describe two memes: the next estimate uses the time measured on this machine.
    ids = web_core.store.meme_ids()[:2]
    run = client.post("/api/jobs", json={"kind": "describe", "model": "fake", "meme_ids": ids}).json()
    done = wait_for_run(client, run["id"])
    after = client.get("/api/jobs/estimate", params={"model": "fake"}).json()
    assert after["count"] == total - 2 and after["basis"] == "measured"
    assert after["seconds_per_meme"] == round((done["finished_at"] - done["started_at"]) / 2, 3)
    assert "measured here" in after["text"]


def test_estimate_durations_read_like_a_person_would_say_them():
    from memesearch.web.estimates import human_duration

    assert human_duration(20) == "less than a minute"
    assert human_duration(60) == "1 minute"
    assert human_duration(354 * 5) == "30 minutes"
    assert human_duration(3 * 3600 + 5 * 60) == "3 h 05 min"
