"""OCR in worker processes (memesearch.ocr_workers): the same texts as in-process OCR, one bad
file recorded as that file's error, duplicates read once, resumable."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import numpy as np
import pytest

from memesearch.config import Settings
from memesearch.library.scanner import scan_folder
from memesearch.ml.fake import FakeEmbedder
from memesearch.ml.ocr import RapidOcrEngine
from memesearch.ocr_workers import CRASHED, MIN_MEMES_FOR_WORKERS, OcrWorkers, _read_one, worker_count
from memesearch.pipeline import Pipeline
from memesearch.store.sqlite import SqliteStore
from tests.hostile.corpus import hostile_cases

BROKEN_PNG = next(case.data for case in hostile_cases() if case.name == "broken/ztxt-2mb.png")


@pytest.fixture(scope="module")
def memes(tmp_path_factory):
    from memesearch.library.samples import render_sample_memes

    folder = tmp_path_factory.mktemp("memes")
    return folder, render_sample_memes(folder, count=MIN_MEMES_FOR_WORKERS + 2, seed=11)


def _library(tmp_path: Path, folder: Path, **settings):
    settings = Settings(home=tmp_path / "data", **settings)
    store = SqliteStore(tmp_path / "store.db")
    store.add_folder(str(folder))
    scan_folder(store, store.list_folders()[0], settings)
    return store, settings


def _texts(db: Path) -> dict[str, str]:
    conn = sqlite3.connect(db)
    try:
        return dict(conn.execute("SELECT path, ocr_text FROM memes"))
    finally:
        conn.close()


def _meme_id(db: Path, path: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return conn.execute("SELECT id FROM memes WHERE path = ?", (str(path),)).fetchone()[0]
    finally:
        conn.close()


def test_worker_count_reads_small_batches_in_process_and_honours_the_setting():
    assert worker_count(0, MIN_MEMES_FOR_WORKERS - 1) == 1
    assert worker_count(3, 100) == 3
    assert worker_count(50, MIN_MEMES_FOR_WORKERS) == MIN_MEMES_FOR_WORKERS  # never more workers than memes
    assert worker_count(0, 1000) == min(len(os.sched_getaffinity(0)), 8)


def test_workers_read_the_same_texts_as_the_parent_and_a_broken_file_is_that_file_s_error(tmp_path, memes):
    source, samples = memes
    folder = tmp_path / "memes"
    shutil.copytree(source, folder)
    in_process = tmp_path / "one"
    store, settings = _library(in_process, folder, ocr_workers=1)
    Pipeline(store, settings, ocr=RapidOcrEngine(threads=1), embedder=FakeEmbedder()).run_ocr()
    expected = _texts(in_process / "store.db")
    store.close()

    # Damaged after the scan (same size and mtime), so only the OCR stage finds out.
    parallel = tmp_path / "two"
    store, settings = _library(parallel, folder, ocr_workers=2)
    victim = folder / samples[3].path.name
    info = victim.stat()
    victim.write_bytes(BROKEN_PNG[: info.st_size].ljust(info.st_size, b"\0"))
    os.utime(victim, ns=(info.st_atime_ns, info.st_mtime_ns))
    report = Pipeline(store, settings, ocr=RapidOcrEngine(), embedder=FakeEmbedder()).run_ocr()

    assert report.done == len(samples) - 1
    assert [meme_id for meme_id, _ in report.failed] == [_meme_id(parallel / "store.db", victim)]
    errors = dict(store.errors())
    assert list(errors) == [str(victim)] and "metadata chunk" in errors[str(victim)]
    got = _texts(parallel / "store.db")
    del got[str(victim)], expected[str(victim)]
    assert got == expected
    assert sum(bool(text) for text in got.values()) >= len(got) - 1, "the rendered captions are read"
    # Nothing is left to do: the next run reads nothing again.
    again = Pipeline(store, settings, ocr=RapidOcrEngine(), embedder=FakeEmbedder()).run_ocr()
    assert again.done == 0 and again.failed == []
    store.close()


def test_a_duplicate_is_read_once(tmp_path, memes):
    source, samples = memes
    folder = tmp_path / "memes"
    shutil.copytree(source, folder)
    first = samples[0].path.name
    shutil.copy(folder / first, folder / f"copy-of-{first}")
    store, settings = _library(tmp_path, folder, ocr_workers=2)
    report = Pipeline(store, settings, ocr=RapidOcrEngine(), embedder=FakeEmbedder()).run_ocr()
    assert report.done + report.skipped == len(samples) + 1 and report.failed == []
    texts = _texts(tmp_path / "store.db")
    assert texts[str(folder / first)] == texts[str(folder / f"copy-of-{first}")] != ""
    store.close()


def _dies_on_marked_files(meme_id: int, path: str):
    """The real worker task, except that it kills its process (as a native crash in a decoder would)."""
    if "crash" in Path(path).name:
        os._exit(11)
    return _read_one(meme_id, path)


class _WorkersThatCrash(OcrWorkers):
    task = staticmethod(_dies_on_marked_files)


def test_a_file_that_kills_its_worker_fails_alone_and_the_others_are_read(tmp_path, memes):
    source, samples = memes
    paths = [source / sample.path.name for sample in samples[:5]]
    crasher = tmp_path / "crash.png"
    shutil.copy(paths[0], crasher)
    items = [(i, str(path)) for i, path in enumerate([*paths[:2], crasher, *paths[2:]])]
    with _WorkersThatCrash(2, min_confidence=0.5, max_megapixels=50) as workers:
        outcomes = list(workers.read(items))
    assert [o.meme_id for o in outcomes] == [i for i, _ in items], "one outcome per meme, in order"
    assert outcomes[2].failed == CRASHED and outcomes[2].result is None
    others = [o for o in outcomes if o.meme_id != 2]
    assert all(o.result is not None and o.failed is None for o in others)
    assert sum(bool(o.result.text) for o in others) >= 3, "the rendered captions are read"


def test_template_features_come_from_the_worker_s_decode_and_equal_the_stage_s_own(tmp_path, memes):
    from memesearch.library.decode import load_rgb
    from memesearch.store.templates import TemplateStore
    from memesearch.templates.features import extract

    source, samples = memes
    store, settings = _library(tmp_path, source, ocr_workers=2)
    pipeline = Pipeline(store, settings, ocr=RapidOcrEngine(), embedder=FakeEmbedder())
    assert pipeline.run_ocr().done == len(samples)
    templates = TemplateStore(store)
    assert templates.pending() == [], "the OCR stage stored every meme's template features"
    points = 0
    for sample in samples:
        meme_id = _meme_id(tmp_path / "store.db", sample.path)
        stored = templates.features_of([meme_id])[meme_id]
        # What the template stage computes itself: the file decoded again, the stored caption boxes.
        own = extract(load_rgb(sample.path, settings.max_megapixels), templates.ocr_boxes(meme_id))
        assert np.array_equal(stored.descriptors, own.descriptors) and len(stored.points) == len(own.points)
        assert np.allclose(stored.vector, own.vector, atol=1e-3)
        points += len(own.points)
    assert points > 0
    report = pipeline.run_templates()
    assert report.done == len(samples) and report.failed == [], "they count as the template stage's work"
    store.close()


def test_the_embedder_loads_while_the_workers_read(tmp_path, memes):
    """The embed stage that follows OCR finds its model loaded: the parent loaded it while it
    waited on the workers (in another thread, so the OCR results kept coming meanwhile)."""
    import threading

    class RecordingEmbedder(FakeEmbedder):
        loaded_by: str | None = None

        def _load(self) -> None:
            type(self).loaded_by = threading.current_thread().name

    source, samples = memes
    store, settings = _library(tmp_path, source, ocr_workers=2)
    embedder = RecordingEmbedder()
    assert not embedder.is_loaded
    report = Pipeline(store, settings, ocr=RapidOcrEngine(), embedder=embedder).run_ocr()
    assert report.done == len(samples)
    assert embedder.is_loaded and RecordingEmbedder.loaded_by == "preload-embedder"
    store.close()


def test_an_embedder_that_cannot_load_does_not_stop_ocr(tmp_path, memes):
    """Its failure belongs to the embed stage, which loads it again and reports why."""
    from memesearch.errors import ModelUnavailableError

    class BrokenEmbedder(FakeEmbedder):
        def _load(self) -> None:
            raise ModelUnavailableError("no embedding model here")

    source, samples = memes
    store, settings = _library(tmp_path, source, ocr_workers=2)
    embedder = BrokenEmbedder()
    report = Pipeline(store, settings, ocr=RapidOcrEngine(), embedder=embedder).run_ocr()
    assert report.done == len(samples) and report.failed == []
    assert not embedder.is_loaded
    store.close()
