"""Web fixtures: a small indexed library (real OCR + MiniLM) built once, copied per test."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from memesearch.app import Core
from memesearch.config import Settings
from tests.conftest import make_core

LIBRARY_SIZE = 12


@pytest.fixture(scope="session")
def web_template(tmp_path_factory, shared_models_dir):
    """(data dir, meme folder, samples): 12 rendered memes indexed once per test run."""
    from memesearch.library.indexing import run_index
    from memesearch.library.samples import render_sample_memes

    folder = tmp_path_factory.mktemp("web_memes")
    samples = render_sample_memes(folder, count=LIBRARY_SIZE, seed=11)
    home = tmp_path_factory.mktemp("web_template") / "data"
    core = make_core(home, shared_models_dir, threads=1)
    core.store.add_folder(str(folder))
    run_index(core)
    core.close()
    return home, folder, samples


def copy_library(web_template, target: Path, **overrides) -> Core:
    """A private copy of the template library (its data dir; the meme files are shared, read-only)."""
    home, _, _ = web_template
    shutil.copytree(home, target, symlinks=True)
    return Core(Settings(home=target, threads=1, **overrides))


@pytest.fixture
def web_core(web_template, tmp_path):
    core = copy_library(web_template, tmp_path / "data")
    yield core
    core.close()


@pytest.fixture
def worker(web_core):
    """The in-process job worker, as `memesearch serve` runs it."""
    from memesearch.jobs.worker import start_in_process

    handle = start_in_process(web_core, concurrency=1)
    yield handle
    handle.stop()


def csrf_client(app) -> TestClient:
    """A test client that fetched a page (CSRF cookie) and sends the token like the pages do."""
    client = TestClient(app, raise_server_exceptions=False)
    client.get("/healthz")
    client.headers["X-CSRF-Token"] = client.cookies["ms_csrf"]
    return client


@pytest.fixture
def client(web_core):
    from memesearch.web import create_app

    with csrf_client(create_app(core=web_core)) as test_client:
        yield test_client


def sample_by_id(core: Core, samples) -> dict[int, object]:
    """Meme id -> SampleMeme (matched by path)."""
    by_path = {str(s.path): s for s in samples}
    return {meme_id: by_path[core.store.get_meme(meme_id).path] for meme_id in core.store.meme_ids()
            if core.store.get_meme(meme_id).path in by_path}
