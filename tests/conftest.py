"""Shared fixtures: settings in a temp data dir, stores, rendered memes, an indexed library."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from memesearch.app import Core
from memesearch.config import Settings

REPO = Path(__file__).resolve().parent.parent

# The `fake` captioner is a developer tool, hidden unless MEMESEARCH_DEV=1; the tests use it
# (and so do the servers and CLIs they start, which inherit the environment). Tests of the
# hiding itself unset it.
os.environ["MEMESEARCH_DEV"] = "1"


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(home=tmp_path / "data")


@pytest.fixture(scope="session")
def postgres_server():
    """A real PostgreSQL with pgvector and pg_trgm for the session. Never skipped: no server, failed tests."""
    from tests.postgres.server import PostgresServer

    server = PostgresServer()
    yield server
    server.stop()


@pytest.fixture
def postgres_url(postgres_server):
    """A fresh, empty database on the session's server."""
    url = postgres_server.new_database()
    yield url
    postgres_server.drop_database(url)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request, tmp_path: Path):
    """Every Store implementation; the contract suite runs against each."""
    if request.param == "sqlite":
        from memesearch.store.sqlite import SqliteStore

        opened = SqliteStore(tmp_path / "store.db")
    else:
        from memesearch.store.postgres import PostgresStore

        opened = PostgresStore(request.getfixturevalue("postgres_url"))
    yield opened
    opened.close()


@pytest.fixture(scope="session")
def shared_models_dir(tmp_path_factory) -> Path:
    """One models dir per test run, so the MiniLM ONNX graph is built once."""
    return tmp_path_factory.mktemp("models")


def make_core(home: Path, models_dir: Path, **overrides) -> Core:
    settings = Settings(home=home, **overrides)
    core = Core(settings)
    # Reuse the session's built embedding model instead of rebuilding it per test.
    target = settings.models_dir
    if not target.exists():
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(models_dir, target_is_directory=True)
    return core


@pytest.fixture(scope="session")
def corpus(tmp_path_factory):
    """64 rendered memes (fonts, GIFs, alpha PNGs, several boxes, non-English, one space-less)."""
    from memesearch.library.samples import render_sample_memes

    folder = tmp_path_factory.mktemp("corpus")
    return folder, render_sample_memes(folder, count=64, seed=7)


@pytest.fixture(scope="session")
def indexed(tmp_path_factory, corpus, shared_models_dir):
    """The corpus indexed with real OCR and real MiniLM embeddings (built once per run)."""
    from memesearch.library.indexing import run_index

    folder, samples = corpus
    core = make_core(tmp_path_factory.mktemp("library"), shared_models_dir)
    core.store.add_folder(str(folder))
    summary = run_index(core)
    yield core, samples, summary
    core.close()


@pytest.fixture(scope="module")
def browser():
    """Debian's Chromium driven by Playwright, one per test module (never a downloaded browser)."""
    from playwright.sync_api import sync_playwright

    from tests.web.server import CHROMIUM, CHROMIUM_ARGS

    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: apt-get install -y chromium (Playwright's own download cannot run here)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()
