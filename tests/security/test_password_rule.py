"""Beyond loopback, `serve` needs a password of at least 8 characters that are not spaces."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from memesearch.cli import app
from memesearch.web.security import password_problem


@pytest.mark.parametrize("password", ["", " ", "        ", "\t\n \u00a0", "a b c d e f g", "short7!"])
def test_serve_refuses_a_weak_password_beyond_loopback(tmp_path, monkeypatch, password):
    monkeypatch.setenv("MEMESEARCH_PASSWORD", password)
    result = CliRunner().invoke(app, ["--data-dir", str(tmp_path), "serve", "--host", "0.0.0.0"])
    assert result.exit_code == 2, result.output
    assert "refusing to serve on 0.0.0.0" in result.output and "MEMESEARCH_PASSWORD" in result.output
    assert "8 characters" in result.output
    assert "Traceback" not in result.output


def test_the_rule_counts_characters_that_are_not_blank():
    assert password_problem("") == "no password is set"
    assert "fewer than 8" in password_problem(" " * 40)
    assert "fewer than 8" in password_problem("a b c d e f g")
    assert password_problem("abcdefgh") is None
    assert password_problem("correct horse") is None
    assert password_problem(" pässwörd ") is None
