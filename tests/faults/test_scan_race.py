"""Two worker threads on one index run must not scan its folder at the same time.

Found by tests/faults/test_kill9.py: the reaper re-kicks an index run whose scan outlasts the
kick interval (30 s at the default lease; a big folder), a second thread scanned the same
folder concurrently, collided on `UNIQUE memes.path` and marked the whole run failed.
"""

from __future__ import annotations

import threading
import time

import pytest
from PIL import Image

from memesearch.library import scanner
from tests.conftest import make_core

pytestmark = pytest.mark.timeout(120)


def test_concurrent_work_on_an_unscanned_index_run_scans_once(tmp_path, shared_models_dir, monkeypatch):
    folder = tmp_path / "memes"
    folder.mkdir()
    for index in range(4):
        Image.new("RGB", (24, 24), (index * 60, 0, 0)).save(folder / f"m{index}.png")
    core = make_core(tmp_path / "data", shared_models_dir, threads=1, ocr_enabled=False)
    run = core.jobs.start("index", folder_id=core.store.add_folder(str(folder)).id)
    real_scan, scans = scanner.scan_folder, []

    def slow_scan(*args, **kwargs):
        scans.append(threading.get_ident())
        time.sleep(0.5)  # long enough for the other thread to start its own scan without the fix
        return real_scan(*args, **kwargs)

    monkeypatch.setattr(scanner, "scan_folder", slow_scan)
    threads = [threading.Thread(target=core.jobs.work, args=(run.id,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    final = core.jobs.get(run.id)
    assert len(scans) == 1, "the folder was scanned once"
    assert (final.state, final.total, final.done, final.failed) == ("done", 4, 4, 0), final.as_dict()
    assert core.store.counts()["ok"] == 4
    core.close()
