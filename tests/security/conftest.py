"""A small locked-down library (password + API token) for the security tests."""

from __future__ import annotations

import pytest
from PIL import Image

from tests.conftest import make_core
from tests.reliability import record_cases  # noqa: F401  (cases per test, for docs/RELIABILITY.md)

PASSWORD = "correct-horse-battery-staple-7731"
API_TOKEN = "api-token-5f2b9c1e8d7a"


@pytest.fixture
def locked(tmp_path, shared_models_dir):
    """(core, meme folder, outside folder): three scanned memes with OCR text, login required."""
    from memesearch.library.scanner import scan_folder

    folder, outside = tmp_path / "memes", tmp_path / "outside"
    folder.mkdir()
    outside.mkdir()
    for index in range(3):
        Image.new("RGB", (24, 24), (index * 90, 40, 40)).save(folder / f"m{index}.png")
    (outside / "secret.txt").write_text("root:x:0:0:TOP-SECRET-OUTSIDE\n")
    core = make_core(tmp_path / "data", shared_models_dir, threads=1, password=PASSWORD, api_token=API_TOKEN)
    scan_folder(core.store, core.store.add_folder(str(folder)), core.settings)
    for meme_id in core.store.meme_ids():
        core.store.set_ocr(meme_id, f"meme {meme_id}", "test")
    yield core, folder, outside
    core.close()


@pytest.fixture
def library(tmp_path, shared_models_dir):
    """A data dir with one meme whose app can be (re)started with other settings (tests/security/helpers.py)."""
    from tests.security.helpers import LockedLibrary

    locked_library = LockedLibrary(tmp_path, shared_models_dir)
    yield locked_library
    locked_library.close()
