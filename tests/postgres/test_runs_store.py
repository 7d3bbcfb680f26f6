"""The runs/leases half of the Store contract, on both stores (the jobs layer's storage)."""

from __future__ import annotations

import threading
import time

from memesearch.store.models import FileRecord


def add_memes(store, count: int) -> list[int]:
    return [store.insert_file(FileRecord(path=f"/m/{n}.png", folder_id=None, size=1, mtime=1.0, sha256=f"s{n}"))
            for n in range(count)]


def test_run_lifecycle(store):
    ids = add_memes(store, 4)
    run_id = store.create_run("describe", "fake", {"only": ids})
    store.add_run_items(run_id, ids)
    store.add_run_items(run_id, ids[:1])  # idempotent
    assert store.runs_in_state(("queued",)) == [run_id]
    first = store.claim_run_items(run_id, 3, lease_s=60)
    assert first == ids[:3]
    assert store.claim_run_items(run_id, 3, lease_s=60) == ids[3:]  # claimed items are not handed out twice
    assert store.finish_run_item(run_id, ids[0], "done")
    assert not store.finish_run_item(run_id, ids[0], "done")  # no longer claimed
    assert store.finish_run_item(run_id, ids[1], "failed", "bad image")
    assert store.finish_run_item(run_id, ids[2], "queued", "service down", retry_at=time.time() + 3600)
    assert store.item_attempts(run_id, ids[2]) == 1
    assert store.claim_run_items(run_id, 5, lease_s=60) == []  # waiting for its retry time
    store.update_run(run_id, state="running", started_at=1.0, params={"only": ids, "x": 1})
    row = store.get_run_row(run_id)
    assert (row["state"], row["params"]["x"]) == ("running", 1)
    assert row["counts"] == {"queued": 1, "running": 1, "done": 1, "failed": 1, "cancelled": 0}
    assert row["recent_done"] == 2
    assert store.run_errors(run_id) == [{"meme_id": ids[1], "path": "/m/1.png", "error": "bad image"}]
    assert store.set_run_items_status(run_id, "failed", "queued") == 1
    assert store.item_attempts(run_id, ids[1]) == 0
    assert store.set_run_items_status(run_id, "queued", "cancelled") == 2
    assert [r["id"] for r in store.list_run_rows()] == [run_id]


def test_expired_leases_are_requeued(store):
    ids = add_memes(store, 2)
    run_id = store.create_run("index", None, {})
    store.add_run_items(run_id, ids)
    store.claim_run_items(run_id, 2, lease_s=-1)  # a worker that died at once
    assert store.requeue_expired_leases() == [run_id]
    assert store.claim_run_items(run_id, 5, lease_s=60) == ids


def test_concurrent_claims_never_overlap(store):
    ids = add_memes(store, 40)
    run_id = store.create_run("describe", "fake", {})
    store.add_run_items(run_id, ids)
    claimed: list[list[int]] = []

    def claim_all() -> None:
        while batch := store.claim_run_items(run_id, 3, lease_s=60):
            claimed.append(batch)

    threads = [threading.Thread(target=claim_all) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    flat = [meme_id for batch in claimed for meme_id in batch]
    assert sorted(flat) == ids


def test_a_run_is_created_with_its_items_at_once(store):
    """The reaper closes an active run with nothing queued; a run created without its items,
    then given them, could be closed as done in between (seen as a flaky describe-run test)."""
    ids = add_memes(store, 3)
    run_id = store.create_run("describe", "fake", {}, meme_ids=ids + ids[:1])
    counts = store.get_run_row(run_id)["counts"]
    assert counts["queued"] == 3 and counts["running"] == 0
    assert store.claim_run_items(run_id, 5, lease_s=60) == ids
