"""The data dir's disk fills up mid-index (a 2 MB tmpfs): a clear error, no corruption, and a
rerun after space is freed completes with nothing lost or duplicated."""

from __future__ import annotations

import errno
import os
import subprocess

import pytest
from typer.testing import CliRunner

from memesearch.cli import app
from memesearch.config import Settings
from tests.faults.helpers import assert_library_consistent

MEMES = 12
pytestmark = pytest.mark.timeout(240)
runner = CliRunner()


@pytest.fixture
def small_disk(tmp_path):
    """A 2 MB tmpfs (needs root: CI runs as root; elsewhere this says why it cannot run)."""
    mount_point = tmp_path / "data"
    mount_point.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a 2 MB tmpfs needs root (CI runs the suite as root)")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"mount -t tmpfs is not permitted here: {done.stderr.strip()}")
    yield mount_point
    subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(directory, leave_bytes: int):
    """Fill the file system until ``leave_bytes`` remain free."""
    filler = directory / "filler.bin"
    with open(filler, "wb") as out:
        try:
            while True:
                out.write(b"\0" * 16384)
                out.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    os.truncate(filler, filler.stat().st_size - leave_bytes)
    return filler


def test_a_full_disk_is_a_clear_error_and_a_rerun_completes(small_disk, tmp_path, shared_models_dir):
    from memesearch.library.samples import render_sample_memes

    folder = tmp_path / "memes"
    render_sample_memes(folder, count=MEMES, seed=31)
    home = small_disk
    (home / "models").symlink_to(shared_models_dir, target_is_directory=True)
    assert runner.invoke(app, ["--data-dir", str(home), "add", str(folder)]).exit_code == 0
    filler = fill(home, leave_bytes=24 * 1024)

    failed = runner.invoke(app, ["--data-dir", str(home), "index", "--json"])
    assert failed.exit_code != 0, "the index cannot have fit in 24 kB"
    assert failed.exception is None or isinstance(failed.exception, SystemExit), repr(failed.exception)
    assert "full" in failed.output.lower(), failed.output
    assert "Traceback" not in failed.output

    filler.unlink()
    rerun = runner.invoke(app, ["--data-dir", str(home), "index", "--json"])
    assert rerun.exit_code == 0, rerun.output
    assert_library_consistent(Settings(home=home).database_path, MEMES)
