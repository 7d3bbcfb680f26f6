"""Seeded image-mutation fuzzing (tests/fuzz/mutate.py): damaged PNG, APNG, JPEG, GIF, WebP, BMP
and TIFF files through the real decode + hash + thumbnail path and the ML service's decoder, then
a subset through a real `memesearch index` (scan, real RapidOCR, real MiniLM).

Zero escapes: every file is either indexed or ends as that file's recorded error, and the run
finishes. The long run (10,000+ files) is bench/fuzz_images.py; see docs/RELIABILITY.md.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memesearch.cli import app
from memesearch.config import Settings
from tests.fuzz.image_paths import decode_everywhere, is_clear
from tests.fuzz.mutate import EXTENSION, FORMATS, mutated_corpus, seed_images
from tests.reliability import tried

SEED = 20261204
SAMPLE = 420  # 60 per format
INDEXED_SAMPLE = 56  # 8 per format through the real index (OCR is the slow part)
pytestmark = pytest.mark.timeout(300)


def test_the_seeds_are_valid_images_of_every_format(tmp_path):
    settings = Settings(home=tmp_path / "data")
    seeds = seed_images()
    assert set(seeds) == set(FORMATS)
    for fmt, files in seeds.items():
        for number, data in enumerate(files):
            record = decode_everywhere(tmp_path / f"{fmt}{number}{EXTENSION[fmt]}", data, settings, number)
            # TIFF is not an indexed format: it must be refused by content, cleanly.
            expected = "error" if fmt == "tiff" else "ok"
            assert record.status == expected, (fmt, number, record.error)


def test_mutated_images_never_escape_decode_hash_or_thumbnail(tmp_path):
    settings = Settings(home=tmp_path / "data")
    outcomes: Counter[tuple[str, str]] = Counter()
    mutations: Counter[str] = Counter()
    for index, (fmt, name, data) in enumerate(mutated_corpus(SAMPLE, SEED)):
        mutations.update(name.split("-", 2)[2].split("+"))
        record = decode_everywhere(tmp_path / f"{name}{EXTENSION[fmt]}", data, settings, index)
        outcomes[(fmt, record.status)] += 1
        tried()
    for fmt in FORMATS:
        assert outcomes[(fmt, "error")] >= 10, f"the mutator damages {fmt} files"
        if fmt != "tiff":
            assert outcomes[(fmt, "ok")] >= 5, f"some mutated {fmt} files still decode (a lenient mutation)"
    assert all(mutations[name] >= 10 for name in ("bit_flip", "byte_edit", "truncate", "duplicate_segment",
                                                  "drop_segment", "resize_length", "huge_metadata")), mutations


@pytest.fixture(scope="module")
def indexed_mutants(tmp_path_factory, shared_models_dir):
    from memesearch.library.samples import render_sample_memes

    root = tmp_path_factory.mktemp("mutants")
    folder, home = root / "memes", root / "data"
    folder.mkdir()
    home.mkdir()
    (home / "models").symlink_to(shared_models_dir, target_is_directory=True)
    # A different seed from the decode test: these files are new to the decoder too.
    files = {}
    for fmt, name, data in mutated_corpus(INDEXED_SAMPLE, SEED + 1):
        path = folder / f"{name}{EXTENSION[fmt]}"
        path.write_bytes(data)
        files[str(path)] = data
    good = render_sample_memes(folder / "good", count=2, seed=41)
    cli(home, "add", str(folder))
    summary = json.loads(cli(home, "index", "--json"))
    return {"folder": folder, "home": home, "files": files, "good": good, "summary": summary}


def cli(home: Path, *args: str) -> str:
    result = CliRunner().invoke(app, ["--data-dir", str(home), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def _library(home: Path):
    from memesearch.app import Core

    core = Core(Settings(home=home))
    try:
        return {meme.path: meme for meme in core.store.get_memes(core.store.meme_ids(status=None))}
    finally:
        core.close()


def test_index_finishes_and_every_mutant_is_indexed_or_a_recorded_error(indexed_mutants):
    home, files = indexed_mutants["home"], indexed_mutants["files"]
    errors = {item["path"]: item["error"] for item in json.loads(cli(home, "status", "--errors", "--json"))["errors"]}
    memes = _library(home)
    assert set(files) <= set(memes), "every mutant has a row"
    for path in files:
        meme = memes[path]
        if meme.status == "ok":
            assert meme.ocr_engine, f"OCR did not run on {path}"
        else:
            assert meme.status == "error" and is_clear(errors.get(path)), (path, meme.status, meme.error)
    for sample in indexed_mutants["good"]:
        assert memes[str(sample.path)].status == "ok" and memes[str(sample.path)].ocr_engine
    statuses = Counter(memes[path].status for path in files)
    assert statuses["ok"] >= 5 and statuses["error"] >= 10, statuses
    tried(len(files))


def test_recorded_errors_are_not_retried_until_the_file_changes(indexed_mutants):
    home, folder = indexed_mutants["home"], indexed_mutants["folder"]
    before = _library(home)
    again = json.loads(cli(home, "index", "--json"))
    assert again["ocr"]["done"] == 0 and again["ocr"]["failed"] == []
    scan = again["folders"][0]
    assert scan["changed"] == 0 and scan["added"] == 0 and scan["errors"] == [], "no file is read again"
    broken = next(path for path, meme in before.items() if meme.status == "error")
    Path(broken).write_bytes(seed_images()["png"][0])  # the user repairs the file
    third = json.loads(cli(home, "index", "--json"))
    assert third["folders"][0]["changed"] == 1
    after = _library(home)[broken]
    assert after.status == "ok" and after.ocr_engine, after.error
