"""CLI inputs that used to end in a traceback: bounds, invalid UTF-8, terminal escapes (issue 11)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from PIL import Image
from typer.testing import CliRunner

from memesearch.cli import app
from memesearch.cli.output import printable
from memesearch.search.query import MAX_FILTERS
from tests.test_cli import cli, home, indexed_home, small_corpus  # noqa: F401 - fixtures

runner = CliRunner()
ESCAPE_NAME = "evil\x1b]0;owned\x07\x1b[2J\x1b[31mred\u202etxt.png"


def _refused(home: Path, *args: str) -> str:
    result = runner.invoke(app, ["--data-dir", str(home), *args], catch_exceptions=False)
    assert result.exit_code == 2, result.output
    assert "Traceback" not in result.output
    return result.stderr


def test_printable_escapes_controls_bidi_and_undecodable_bytes():
    assert printable("a\x1b[31mb\x07") == "a\\x1b[31mb\\x07"
    assert printable("x\u202ey\nz") == "x\\u202ey\\nz"
    assert printable(b"caf\xe9".decode("utf-8", "surrogateescape")) == "caf\\xe9"
    assert printable("plain café 👨‍👩‍👧 text") == "plain café 👨‍👩‍👧 text"


def test_search_bounds_exit_2_with_the_limit(indexed_home):
    home, _, _ = indexed_home
    stderr = _refused(home, "search", " ".join(["tag:x"] * 999))
    assert f"at most {MAX_FILTERS}" in stderr
    assert "100000" in _refused(home, "search", "cat", "--offset", "4611686018427387903")
    assert "1000" in _refused(home, "search", "cat", "--limit", "5000")


def test_invalid_utf8_arguments_and_batch_files_exit_2(indexed_home, tmp_path):
    home, _, _ = indexed_home
    # Through a real process: Python turns the undecodable byte into a lone surrogate.
    result = subprocess.run([sys.executable, "-m", "memesearch", "--data-dir", str(home), "search", b"caf\xe9"],
                            capture_output=True, timeout=120, env={**os.environ, "LC_ALL": "C.UTF-8"})
    assert result.returncode == 2, result.stderr
    stderr = result.stderr.decode()
    assert "not valid UTF-8" in stderr and "caf\\xe9" in stderr and "Traceback" not in stderr
    batch = tmp_path / "queries.txt"
    batch.write_bytes(b"drake\nbad \xff\xfe line\n")
    assert "line 2" in _refused(home, "search", "--batch", str(batch))
    assert "not valid UTF-8" in _refused(home, "tag", "add", "1", "bad\udcff")


def test_names_with_terminal_escapes_are_printed_escaped(home, tmp_path):  # noqa: F811
    folder = tmp_path / "memes\x1b[1m"
    folder.mkdir()
    Image.new("RGB", (32, 32), (200, 10, 10)).save(folder / ESCAPE_NAME)
    (folder / ("broken\x1b[2J.png")).write_bytes(b"\x89PNG\r\n\x1a\n not really")
    cli(home, "add", str(folder))
    outputs = [cli(home, "index").output, cli(home, "status", "--errors").output, cli(home, "folders").output,
               cli(home, "show", "1").output, cli(home, "show", "2").output,
               cli(home, "search", "--mode", "keyword", "").output]
    for output in outputs:
        assert "\x1b" not in output and "\x07" not in output and "\u202e" not in output, output
    # Rich wraps long lines at the test terminal's 80 columns: compare without the line breaks.
    flat = "".join(line.strip() for line in "".join(outputs).splitlines())
    assert "owned\\x07" in flat and "broken\\x1b[2J.png" in flat
    assert "memes\\x1b[1m" in flat and "\\u202e" in flat
