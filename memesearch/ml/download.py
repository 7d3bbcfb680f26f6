"""Fetching a model's ONNX files into ``<models dir>/<model id>/``.

Only the files the runtime needs for one dtype are fetched, at the pinned
revision. Without network the command fails within seconds (a short
connectivity probe runs before huggingface_hub's own, much longer, timeouts)
and says exactly which files to fetch by hand and how to install them with
``--from DIR``.
"""

from __future__ import annotations

import difflib
import gzip
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn

from memesearch.errors import ConfigError, ModelUnavailableError, require
from memesearch.ml.chain import model_dir, onnx_dtype, required_files
from memesearch.ml.registry import ModelSpec

DEFAULT_ENDPOINT = "https://huggingface.co"
#: Seconds for the connectivity probe: long enough for a slow link, short enough to fail fast.
PROBE_TIMEOUT_S = 3.0


class DownloadError(ModelUnavailableError):
    """Files could not be fetched or installed."""


@dataclass
class RemoteFile:
    #: Path inside the hub repo (may end in .gz).
    repo_path: str
    #: Path inside the model directory (gunzipped name for .gz).
    local_path: str


@dataclass
class FilesStatus:
    model_id: str
    dtype: str
    directory: Path
    present: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    total_bytes: int = 0
    #: Why the file list is unknown (family code not installed), else None.
    unknown_reason: str | None = None

    @property
    def complete(self) -> bool:
        return self.unknown_reason is None and not self.missing


def remote_files(spec: ModelSpec, dtype: str) -> list[RemoteFile]:
    source = spec.sources.onnx
    if source is None:
        raise ConfigError(f"model {spec.id!r} has no downloadable ONNX files (backends: {', '.join(spec.backends)})")
    if dtype in source.files:
        return [RemoteFile(name, name.removesuffix(".gz")) for name in source.files[dtype]]
    return [RemoteFile(name, name) for name in required_files(spec, dtype)]


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def file_url(spec: ModelSpec, remote: RemoteFile) -> str:
    return f"{endpoint()}/{spec.sources.onnx.repo}/resolve/{spec.sources.onnx.revision}/{remote.repo_path}"


def status(spec: ModelSpec, models_dir: Path, dtype: str | None = None) -> FilesStatus:
    """Which of the model's ONNX files are present, and their total size."""
    chosen = onnx_dtype(spec, dtype) if spec.sources.onnx else "none"
    directory = model_dir(spec, models_dir)
    result = FilesStatus(spec.id, chosen, directory)
    if spec.sources.onnx is None:
        return result
    try:
        names = [remote.local_path for remote in remote_files(spec, chosen)]
    except ModelUnavailableError as exc:
        result.unknown_reason = exc.message
        return result
    for name in names:
        path = directory / name
        if path.is_file():
            result.present.append(name)
            result.total_bytes += path.stat().st_size
        else:
            result.missing.append(name)
    return result


def _offline_error(spec: ModelSpec, files: list[RemoteFile], why: str) -> DownloadError:
    urls = "\n".join(f"    {file_url(spec, remote)}" for remote in files)
    names = ", ".join(remote.repo_path for remote in files)
    packed = " (.gz files may be unpacked or not)" if any(r.repo_path.endswith(".gz") for r in files) else ""
    return DownloadError(
        f"cannot download {spec.id}: {why}.\nFetch these files by hand (revision {spec.sources.onnx.revision}):\n{urls}",
        hint=(
            f"put them in one folder, keeping sub-folders or not ({names}){packed}, "
            f"then run: memesearch models pull {spec.id} --from FOLDER"
        ),
    )


def hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


#: url -> (monotonic time, result): `models list` asks once per model; the answer
#: is reused briefly so an offline machine waits once, not once per model.
_PROBE_CACHE: dict[str, tuple[float, str | None]] = {}
PROBE_CACHE_S = 30.0


def probe_hub() -> str | None:
    """None if the hub answers quickly, else why not (huggingface_hub itself retries for minutes)."""
    url = endpoint()
    cached = _PROBE_CACHE.get(url)
    if cached and time.monotonic() - cached[0] < PROBE_CACHE_S:
        return cached[1]
    result = _probe(url)
    _PROBE_CACHE[url] = (time.monotonic(), result)
    return result


def _probe(url: str) -> str | None:
    """None if an HTTP request to the endpoint is answered quickly, else why not.

    Runs in a thread because name resolution ignores socket timeouts and can hang
    for a long time on machines without DNS.
    """
    from concurrent.futures import ThreadPoolExecutor
    from concurrent.futures import TimeoutError as FutureTimeout

    parsed = urlparse(url)
    port = parsed.port or (443 if parsed.scheme == "https" else 80)

    def connect() -> None:
        # An HTTP request, not just a TCP connect: some networks accept every
        # connection and then never answer.
        httpx.head(url, timeout=PROBE_TIMEOUT_S, follow_redirects=False)

    pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="memesearch-probe")
    try:
        pool.submit(connect).result(timeout=PROBE_TIMEOUT_S + 1)
        return None
    except FutureTimeout:
        return f"{parsed.hostname}:{port} did not answer within {PROBE_TIMEOUT_S + 1:.0f} s"
    except (OSError, httpx.HTTPError) as exc:
        return f"{parsed.hostname}:{port} is unreachable ({exc.__class__.__name__}: {exc})"
    finally:
        pool.shutdown(wait=False)


def pull(
    spec: ModelSpec,
    models_dir: Path,
    dtype: str | None = None,
    *,
    from_dir: Path | None = None,
    console: Console | None = None,
) -> FilesStatus:
    """Download (or copy from ``from_dir``) the files for ``dtype``; returns the new status."""
    chosen = onnx_dtype(spec, dtype)
    files = remote_files(spec, chosen)
    target = model_dir(spec, models_dir)
    target.mkdir(parents=True, exist_ok=True)
    if from_dir is not None:
        _copy_from(spec, files, Path(from_dir), target)
    else:
        _download(spec, files, target, console or Console(stderr=True))
    return status(spec, models_dir, chosen)


def _download(spec: ModelSpec, files: list[RemoteFile], target: Path, console: Console) -> None:
    if hub_offline():
        raise _offline_error(spec, files, "HF_HUB_OFFLINE is set")
    problem = probe_hub()
    if problem:
        raise _offline_error(spec, files, problem)
    hub = require("huggingface_hub", extra="torch", purpose="Downloading models")
    from huggingface_hub.utils import disable_progress_bars

    disable_progress_bars()  # one Rich display instead of a tqdm bar per file
    source = spec.sources.onnx
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"{spec.id} ({source.repo}@{source.revision[:12]})", total=len(files))
        for remote in files:
            progress.update(task, description=f"{spec.id}: {remote.repo_path}")
            if remote.repo_path != remote.local_path and (target / remote.local_path).is_file():
                # Already unpacked (installs are atomic); huggingface_hub resumes/skips the rest itself.
                progress.advance(task)
                continue
            try:
                fetched = hub.hf_hub_download(
                    source.repo,
                    remote.repo_path,
                    revision=source.revision,
                    local_dir=target,
                    endpoint=endpoint(),
                    etag_timeout=PROBE_TIMEOUT_S * 3,
                )
            except Exception as exc:  # hub errors: HTTP, not found, timeouts
                raise _offline_error(spec, files, f"fetching {remote.repo_path} failed ({exc.__class__.__name__}: {exc})") from exc
            _install(Path(fetched), target / remote.local_path)
            progress.advance(task)


def _install(source: Path, destination: Path) -> None:
    """Place one file, gunzipping ``.gz`` files; writes via a temp name so a crash leaves no half file."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".partial")
    if source.suffix == ".gz" and destination.suffix != ".gz":
        with gzip.open(source, "rb") as packed, open(partial, "wb") as out:
            shutil.copyfileobj(packed, out, length=1 << 20)
        if source.parent == destination.parent or destination.parent in source.parents:
            source.unlink(missing_ok=True)  # the unpacked copy is what the runtime reads
    elif source.resolve() == destination.resolve():
        return
    else:
        shutil.copyfile(source, partial)
    os.replace(partial, destination)


def _find_in(folder: Path, remote: RemoteFile) -> Path | None:
    """A manually fetched file: same sub-path, or flattened, packed or unpacked."""
    candidates = [remote.repo_path, remote.local_path, Path(remote.repo_path).name, Path(remote.local_path).name]
    for name in dict.fromkeys(candidates):
        path = folder / name
        if path.is_file():
            return path
    return None


def _copy_from(spec: ModelSpec, files: list[RemoteFile], folder: Path, target: Path) -> None:
    if not folder.is_dir():
        raise DownloadError(f"--from {folder}: not a folder")
    found = {remote.local_path: _find_in(folder, remote) for remote in files}
    missing = [name for name, path in found.items() if path is None]
    if missing:
        present = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file())
        lines = []
        for name in missing:
            close = difflib.get_close_matches(name, present, n=1, cutoff=0.6)
            lines.append(f"    {name}" + (f"  (found {close[0]!r}: wrong name?)" if close else ""))
        raise DownloadError(
            f"--from {folder}: {len(missing)} required file(s) not found:\n" + "\n".join(lines),
            hint="names must match the hub files exactly (dtype suffixes such as _int8 included)",
        )
    for remote in files:
        _install(found[remote.local_path], target / remote.local_path)
