"""Model onboarding: readiness before work, one failure for a model that cannot load,
downloads with progress / cancel / resume from a local hub, first-use prompt, hidden fake model."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest
from typer.testing import CliRunner

from memesearch.app import Core
from memesearch.cli import app
from memesearch.config import Settings
from memesearch.errors import ModelNotReadyError, NotFoundError
from memesearch.ml import download, readiness
from memesearch.ml.registry import get_spec
from tests.hub_server import FakeHub, closed_port_url
from tests.service.helpers import wait_for

runner = CliRunner()
REVISION = "0123456789abcdef0123456789abcdef01234567"
BIG = bytes(range(256)) * 4096  # 1 MiB
SMALL = b"tokenizer" * 100
HUB_MODELS = f"""
models:
  hub-test:
    family: smolvlm
    prompt: Describe.
    backends: [onnx]
    sources:
      onnx:
        repo: org/hub-test
        revision: {REVISION}
        dtypes: {{fp32: {{files_mb: {{model: 1}}}}}}
        files:
          fp32: [onnx/model.onnx, tokenizer.json]
"""
HUB_FILES = {"onnx/model.onnx": BIG, "tokenizer.json": SMALL}


@pytest.fixture
def home(tmp_path, monkeypatch):
    home = tmp_path / "data"
    home.mkdir()
    (home / "models.yml").write_text(HUB_MODELS)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", closed_port_url())  # no hub unless a test starts one
    download._PROBE_CACHE.clear()
    return home


def cli(home, *args: str, input: str | None = None, env: dict | None = None):
    return runner.invoke(app, ["--data-dir", str(home), *args], input=input, env=env)


# ----------------------------------------------------------------------------- readiness


def test_describe_with_a_model_that_is_not_downloaded_queues_nothing(home):
    result = cli(home, "jobs", "start", "describe", "--model", "hub-test", "--wait")
    assert result.exit_code == 2, result.output
    assert "The model hub-test is not downloaded yet." in result.output
    assert "memesearch models pull hub-test" in result.output
    assert "run with --verbose for details" in result.output
    listed = json.loads(cli(home, "jobs", "list", "--json").output)
    assert listed == []  # nothing was queued


def test_verbose_shows_the_technical_details(home):
    result = cli(home, "--verbose", "jobs", "start", "describe", "--model", "hub-test")
    assert result.exit_code == 2
    assert "details:" in result.output and "file(s) missing" in result.output


def test_readiness_offers_a_download_action(home):
    settings = Settings(home=home)
    state = readiness.check(get_spec("hub-test", home), settings)
    assert not state.ready and state.downloadable
    error = state.error(get_spec("hub-test", home))
    assert isinstance(error, ModelNotReadyError) and error.status == 409
    assert error.action == {"kind": "download", "model": "hub-test", "label": "Download hub-test (about 1 MB)",
                            "size_mb": 1}


def test_a_reachable_hub_does_not_make_a_model_ready(home, monkeypatch):
    """With the hub online, the PyTorch fallback could fetch weights inside a job, silently: that
    is not "downloaded". The model is offered for download instead."""
    hub = FakeHub("org/none", REVISION, {})
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    try:
        state = readiness.check(get_spec("smolvlm-256m", home), Settings(home=home))
    finally:
        hub.close()
    assert not state.ready and state.downloadable
    assert any(reason.startswith(("torch: ", "onnx: ")) for reason in state.reasons)


def test_a_model_that_cannot_load_stops_the_run_as_one_failure(home):
    """Files present but broken: readiness passes, loading fails; the run ends after one meme."""
    from memesearch.jobs.worker import start_in_process
    from memesearch.library.samples import render_sample_memes
    from memesearch.library.scanner import scan_folder
    from memesearch.ml.fake import FakeEmbedder

    folder = home.parent / "memes"
    render_sample_memes(folder, count=8, seed=3)
    installed = home / "models" / "hub-test"
    (installed / "onnx").mkdir(parents=True)
    (installed / "onnx" / "model.onnx").write_bytes(b"not an onnx graph")
    (installed / "tokenizer.json").write_text("{}")
    core = Core(Settings(home=home, ocr_enabled=False))
    core.__dict__["embedder"] = FakeEmbedder()  # the model boundary
    core.store.add_folder(str(folder))
    for each in core.store.list_folders():
        scan_folder(core.store, each, core.settings)
    handle = start_in_process(core, concurrency=2)
    try:
        run = core.jobs.start("describe", model="hub-test")
        assert run.total == 8
        run = wait_for(lambda: (r := core.jobs.get(run.id)) and not r.active and r, what="the run to stop")
    finally:
        handle.stop()
        core.close()
    assert run.state == "failed"
    assert run.failed <= 2 and run.done == 0  # one (or two concurrent) failures, not eight
    assert run.error and "hub-test" in run.error
    assert len({e["error"] for e in run.errors}) == 1


# ----------------------------------------------------------------------------- downloads


def test_unreachable_hub_is_reported_without_waiting(home):
    spec = get_spec("hub-test", home)
    with pytest.raises(download.DownloadError) as error:
        download.pull(spec, home / "models")
    assert "127.0.0.1" in error.value.message and "unreachable" in error.value.message
    assert "--from" in error.value.hint


def test_pull_shows_progress_and_installs_the_files(home, monkeypatch):
    hub = FakeHub("org/hub-test", REVISION, HUB_FILES)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    seen: list[tuple[int, int | None]] = []
    try:
        download.pull(get_spec("hub-test", home), home / "models",
                      on_progress=lambda t: seen.append((t.done_bytes, t.total_bytes)))
    finally:
        hub.close()
    total = len(BIG) + len(SMALL)
    assert seen[-1] == (total, total)
    assert [done for done, _ in seen] == sorted(done for done, _ in seen)  # only grows
    assert len(seen) > 5  # reported while bytes arrive, not once at the end
    assert (home / "models" / "hub-test" / "onnx" / "model.onnx").read_bytes() == BIG
    assert not (home / "models" / "hub-test" / download.PARTIAL_DIR).exists()


def test_cancelled_pull_resumes_where_it_stopped(home, monkeypatch):
    hub = FakeHub("org/hub-test", REVISION, HUB_FILES, bytes_per_s=4_000_000)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    spec = get_spec("hub-test", home)
    cancel = threading.Event()

    def stop_half_way(transfer: download.Transfer) -> None:
        if transfer.done_bytes >= len(BIG) // 2:
            cancel.set()

    try:
        with pytest.raises(download.DownloadCancelled):
            download.pull(spec, home / "models", on_progress=stop_half_way, cancel=cancel)
        partial = home / "models" / "hub-test" / download.PARTIAL_DIR / "onnx" / "model.onnx.part"
        kept = partial.stat().st_size
        assert 0 < kept < len(BIG)
        assert not (home / "models" / "hub-test" / "onnx" / "model.onnx").exists()
        resumed = download.Transfer("hub-test")
        download.pull(spec, home / "models", transfer=resumed, on_progress=lambda t: None)
    finally:
        hub.close()
    assert (home / "models" / "hub-test" / "onnx" / "model.onnx").read_bytes() == BIG
    assert resumed.resumed_bytes == kept
    ranges = [rng for path, rng in hub.gets() if path.endswith("model.onnx")]
    assert ranges == ["", f"bytes={kept}-"]  # the second request asked only for the rest


def test_models_pull_cli_draws_a_progress_bar(home, monkeypatch):
    hub = FakeHub("org/hub-test", REVISION, HUB_FILES)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    try:
        result = cli(home, "models", "pull", "hub-test")
    finally:
        hub.close()
    assert result.exit_code == 0, result.output
    assert "hub-test 2/2 files" in result.output and "1.0 MB" in result.output.replace("1.1", "1.0")


# ----------------------------------------------------------------------------- first use


def test_index_describe_without_a_terminal_names_the_pull_command(home, tmp_path):
    (tmp_path / "memes").mkdir()
    assert cli(home, "add", str(tmp_path / "memes")).exit_code == 0
    result = cli(home, "index", "--describe", "--model", "hub-test")
    assert result.exit_code == 2, result.output
    assert "memesearch models pull hub-test" in result.output and "--yes" in result.output


def test_index_describe_yes_offline_says_so(home, tmp_path):
    (tmp_path / "memes").mkdir()
    cli(home, "add", str(tmp_path / "memes"))
    result = cli(home, "index", "--describe", "--model", "hub-test", "--yes")
    assert result.exit_code == 2
    assert "offline" in result.output and "memesearch models pull hub-test" in result.output


def test_index_describe_yes_downloads_first(home, tmp_path, monkeypatch):
    hub = FakeHub("org/hub-test", REVISION, HUB_FILES)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    (tmp_path / "memes").mkdir()
    cli(home, "add", str(tmp_path / "memes"))
    try:
        result = cli(home, "index", "--describe", "--model", "hub-test", "--yes")
    finally:
        hub.close()
    # The test files are not a real model, so loading fails after the download, in one sentence.
    assert (home / "models" / "hub-test" / "onnx" / "model.onnx").read_bytes() == BIG
    assert result.exit_code == 2 and "hub-test" in result.output


def test_index_describe_at_a_terminal_asks_first(home, tmp_path, monkeypatch):
    from memesearch.cli import model_prompt

    hub = FakeHub("org/hub-test", REVISION, HUB_FILES)
    monkeypatch.setenv("HF_ENDPOINT", hub.url)
    monkeypatch.setattr(model_prompt, "can_ask", lambda: True)
    (tmp_path / "memes").mkdir()
    cli(home, "add", str(tmp_path / "memes"))
    try:
        declined = cli(home, "index", "--describe", "--model", "hub-test", input="n\n")
        assert "Download it now (about 1 MB)?" in declined.output
        assert declined.exit_code == 2 and not (home / "models" / "hub-test" / "onnx" / "model.onnx").exists()
        cli(home, "index", "--describe", "--model", "hub-test", input="y\n")
    finally:
        hub.close()
    assert (home / "models" / "hub-test" / "onnx" / "model.onnx").read_bytes() == BIG


def test_jobs_start_exits_quickly_in_a_real_process(home):
    """The reported case: `jobs start describe --wait` with no model waited for minutes."""
    env = {"MEMESEARCH_HOME": str(home), "HF_ENDPOINT": closed_port_url(), "PATH": "/usr/bin:/bin"}
    import os

    env["PYTHONPATH"] = os.environ.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-m", "memesearch", "jobs", "start", "describe", "--model", "smolvlm-256m",
                           "--wait"], env=env, capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "memesearch models pull smolvlm-256m" in done.stderr


# ----------------------------------------------------------------------------- the fake model


def test_fake_model_is_hidden_without_dev_mode(home, monkeypatch):
    monkeypatch.delenv("MEMESEARCH_DEV")
    listed = json.loads(cli(home, "models", "list", "--json").output)["models"]
    assert "fake" not in [row["id"] for row in listed] and "smolvlm-256m" in [row["id"] for row in listed]
    result = cli(home, "jobs", "start", "describe", "--model", "fake")
    assert result.exit_code == 2 and "MEMESEARCH_DEV=1" in result.output
    with pytest.raises(NotFoundError):
        readiness.listed_spec("fake", Settings(home=home))
    monkeypatch.setenv("MEMESEARCH_DEV", "1")
    listed = json.loads(cli(home, "models", "list", "--json").output)["models"]
    assert "fake" in [row["id"] for row in listed]
