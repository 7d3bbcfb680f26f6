"""The hostile corpus through `memesearch index` with real OCR and real MiniLM embeddings.

No crash, every unusable file recorded with a clear reason, every good file indexed and
searchable, and the user's files byte-identical afterwards.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from memesearch.cli import app
from memesearch.library import scanner
from tests.hostile.corpus import build, hostile_cases
from tests.reliability import tried

runner = CliRunner()
pytestmark = pytest.mark.timeout(300)


def cli(home: Path, *args: str) -> str:
    result = runner.invoke(app, ["--data-dir", str(home), *args], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    return result.stdout


def fingerprint(*roots: Path) -> dict[str, str]:
    """sha256 of every regular file (links not followed) under ``roots``."""
    hashes = {}
    for root in roots:
        for dirpath, _, filenames in os.walk(root):
            for name in filenames:
                path = Path(dirpath) / name
                if path.is_file() and not path.is_symlink():
                    hashes[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
    return hashes


@pytest.fixture(scope="module")
def hostile_library(tmp_path_factory, shared_models_dir):
    from memesearch.library.samples import render_sample_memes

    root = tmp_path_factory.mktemp("hostile")
    folder, outside = root / "memes", root / "outside"
    cases = build(folder, outside)
    good = render_sample_memes(folder / "good", count=6, seed=23)
    before = fingerprint(folder, outside)
    home = root / "data"
    home.mkdir()
    (home / "models").symlink_to(shared_models_dir, target_is_directory=True)

    vanishing = {str(folder / case.name) for case in cases if case.vanish}
    real_walk = scanner.walk_images

    def walk_then_delete(walk_root, summary, **options):
        # A file that disappears between the directory listing and the read (a sync client, `rm`).
        for path, info in real_walk(walk_root, summary, **options):
            if str(path) in vanishing:
                path.unlink()
            yield path, info

    mp = pytest.MonkeyPatch()
    mp.setattr(scanner, "walk_images", walk_then_delete)
    try:
        cli(home, "add", str(folder))
        summary = json.loads(cli(home, "index", "--json"))
    finally:
        mp.undo()
    status = json.loads(cli(home, "status", "--errors", "--json"))
    for path in vanishing:
        before.pop(path)
    return {"folder": folder, "outside": outside, "cases": cases, "good": good, "home": home,
            "summary": summary, "status": status, "before": before}


def _memes(home: Path) -> dict[str, object]:
    from memesearch.app import Core
    from memesearch.config import Settings

    core = Core(Settings(home=home))
    try:
        return {meme.path: meme for meme in core.store.get_memes(core.store.meme_ids())}
    finally:
        core.close()


def test_every_unusable_file_has_a_clear_recorded_error(hostile_library):
    folder, cases = hostile_library["folder"], hostile_library["cases"]
    recorded = {item["path"]: item["error"] for item in hostile_library["status"]["errors"]}
    expected = {str(folder / c.name): c.reason for c in cases if c.outcome == "error"}
    assert len(expected) >= 20
    tried(len(expected))
    refused = {str(folder / c.name): c.reason for c in cases if c.outcome == "skipped"}  # links, vanished files
    assert set(recorded) == set(expected) | set(refused), "status --errors lists exactly the unusable and refused files"
    for path, reason in {**expected, **refused}.items():
        assert reason.lower() in recorded[path].lower(), (path, recorded[path])
        assert len(recorded[path]) > 10 and "Traceback" not in recorded[path]


def test_refused_paths_are_reported_and_never_read(hostile_library):
    folder, cases = hostile_library["folder"], hostile_library["cases"]
    skipped = {item["path"]: item["reason"] for item in hostile_library["summary"]["folders"][0]["skipped"]}
    expected = {str(folder / c.name): c.reason for c in cases if c.outcome == "skipped"}
    assert set(skipped) == set(expected)
    tried(len(expected) + sum(c.outcome == "ignored" for c in cases))
    for path, reason in expected.items():
        assert reason in skipped[path], (path, skipped[path])
    memes = _memes(hostile_library["home"])
    refused = set(expected) | {str(folder / c.name) for c in cases if c.outcome == "ignored"}
    assert not refused & set(memes), "no meme row for a refused or non-regular path"
    assert all(Path(path).resolve().is_relative_to(folder.resolve()) for path in memes)


def test_all_good_and_odd_files_are_indexed_with_text_and_vectors(hostile_library):
    folder, cases, good = hostile_library["folder"], hostile_library["cases"], hostile_library["good"]
    memes = _memes(hostile_library["home"])
    wanted = {str(folder / c.name) for c in cases if c.outcome == "indexed"} | {str(s.path) for s in good}
    assert wanted <= set(memes)
    tried(len(wanted))
    for path in wanted:
        meme = memes[path]
        assert meme.status == "ok", (path, meme.status, meme.error)
        assert meme.ocr_engine, f"OCR did not run on {path}"
    summary = hostile_library["summary"]
    assert summary["ocr"]["failed"] == []
    assert summary["counts"]["ok"] == len(wanted)
    assert summary["counts"]["vectors"] >= len(wanted)
    animated = memes[str(folder / "odd/animated-1000-frames.gif")]
    assert animated.frames == 1000


def test_good_memes_are_searchable_among_the_junk(hostile_library):
    home = hostile_library["home"]
    for sample in hostile_library["good"][:3]:
        words = " ".join(sample.text.split()[:4])
        hits = json.loads(cli(home, "search", words, "--json", "--limit", "5"))["hits"]
        assert str(sample.path) in [hit["path"] for hit in hits], (words, [h["path"] for h in hits])


def test_user_files_are_byte_identical_afterwards(hostile_library):
    after = fingerprint(hostile_library["folder"], hostile_library["outside"])
    tried(len(after))
    assert after == hostile_library["before"]


def test_second_index_is_quiet_and_changes_nothing(hostile_library):
    home = hostile_library["home"]
    counts = hostile_library["summary"]["counts"]
    summary = json.loads(cli(home, "index", "--json"))
    assert summary["ocr"]["done"] == 0 and summary["embed"]["done"] == 0
    assert {k: summary["counts"][k] for k in ("ok", "errors", "vectors")} == \
        {k: counts[k] for k in ("ok", "errors", "vectors")}


# Runs in a child process. Under root it imports everything first (the interpreter lives
# under /root, which `nobody` cannot read), then drops to nobody before touching the folder.
UNPRIVILEGED_SCAN = """
import json, os, sys
from pathlib import Path
from PIL import Image
from memesearch.config import Settings
from memesearch.library.scanner import scan_folder
from memesearch.store.sqlite import SqliteStore
import memesearch.library.decode, memesearch.library.hashing
Image.init()  # Pillow imports its format plugins lazily
if os.geteuid() == 0:
    os.setgroups([])
    os.setgid(65534)
    os.setuid(65534)
assert os.geteuid() != 0
store = SqliteStore(Path(sys.argv[2]) / "store.db")
store.add_folder(sys.argv[1])
summary = scan_folder(store, store.list_folders()[0], Settings(home=Path(sys.argv[2])))
print(json.dumps({"summary": summary.as_dict(), "counts": store.counts(), "errors": store.errors(),
                  "uid": os.geteuid()}))
"""


def test_unreadable_files_and_folders_as_an_unprivileged_user():
    """Root ignores permission bits, so under root the scan runs in a child that drops to `nobody`."""
    root = Path(tempfile.mkdtemp(prefix="memesearch-perm-"))
    try:
        folder, data = root / "memes", root / "data"
        build(folder, root / "outside", [c for c in hostile_cases() if c.name in ("odd/palette.png", "odd/1x1.png")])
        (folder / "locked.png").write_bytes((folder / "odd/1x1.png").read_bytes() + b"")
        (folder / "locked-dir").mkdir()
        (folder / "locked-dir/inside.png").write_bytes((folder / "odd/palette.png").read_bytes())
        data.mkdir()
        for path in [root, folder, *folder.rglob("*"), data]:
            os.chmod(path, 0o755 if path.is_dir() else 0o644)
        os.chmod(folder / "locked.png", 0)
        os.chmod(folder / "locked-dir", 0)
        if os.geteuid() == 0:
            os.chown(data, 65534, 65534)
        result = subprocess.run([sys.executable, "-c", UNPRIVILEGED_SCAN, str(folder), str(data)],
                                capture_output=True, text=True, timeout=120,
                                env={**os.environ, "HOME": str(data)}, cwd=str(Path(__file__).parents[2]))
        assert result.returncode == 0, result.stderr
        report = json.loads(result.stdout)
        errors = dict(map(tuple, report["errors"]))
        assert "Permission denied" in errors[str(folder / "locked.png")]
        assert any(path.endswith("locked-dir") and "Permission denied" in reason
                   for path, reason in (tuple(s.values()) for s in report["summary"]["skipped"]))
        assert report["counts"]["ok"] == 2 and report["uid"] != 0
    finally:
        for path in [root, *root.rglob("*")]:
            if not path.is_symlink():
                os.chmod(path, 0o755 if path.is_dir() else 0o644)
        import shutil

        shutil.rmtree(root, ignore_errors=True)
