"""Fetching a model's ONNX files into ``<models dir>/<model id>/``.

Only the files the runtime needs for one dtype are fetched, at the pinned
revision, from the hub's ``/<repo>/resolve/<revision>/<path>`` URLs (``HF_ENDPOINT``
selects a mirror). Bytes are streamed into ``.partial/`` with live progress
(``Transfer``); a cancelled or broken pull resumes with HTTP Range requests.
Without network the command fails within seconds (a short connectivity probe,
a 2 s connect timeout) and says exactly which files to fetch by hand and how to
install them with ``--from DIR``.

A family may add optional files (``checkpoint_files(dtype)`` in its onnx module: SmolVLM's
``model.safetensors``) and work done after the pull (``after_pull(folder, dtype, onnx source)``: SmolVLM
derives its faster decoder from that checkpoint). The model runs without them, so an optional
file the hub or ``--from`` folder lacks, or a failed ``after_pull``, never fails the pull.
"""

from __future__ import annotations

import difflib
import gzip
import os
import shutil
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlparse

import httpx
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from memesearch.errors import ConfigError, ModelUnavailableError
from memesearch.ml.model_files import model_dir, onnx_dtype, required_files
from memesearch.ml.registry import ModelSpec

DEFAULT_ENDPOINT = "https://huggingface.co"
#: Seconds for the connectivity probe (the answer comes within PROBE_TIMEOUT_S + 0.5 s, DNS
#: included): an unreachable hub is known at once instead of after minutes of retries.
PROBE_TIMEOUT_S = 1.5


class DownloadError(ModelUnavailableError):
    """Files could not be fetched or installed."""


@dataclass
class RemoteFile:
    #: Path inside the hub repo (may end in .gz).
    repo_path: str
    #: Path inside the model directory (gunzipped name for .gz).
    local_path: str
    #: Not needed to run the model (skipped when absent from the hub or a --from folder).
    optional: bool = False


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
    #: Optional files (see the module docstring) not present.
    optional_missing: list[str] = field(default_factory=list)
    #: The family's one line on which graphs will run (SmolVLM: its decoder), when complete.
    decoder: str | None = None

    @property
    def complete(self) -> bool:
        return self.unknown_reason is None and not self.missing


def remote_files(spec: ModelSpec, dtype: str) -> list[RemoteFile]:
    source = spec.sources.onnx
    if source is None:
        raise ConfigError(f"model {spec.id!r} has no downloadable ONNX files (backends: {', '.join(spec.backends)})")
    if dtype in source.files:
        return [RemoteFile(name, name.removesuffix(".gz")) for name in source.files[dtype]]
    extra = _family_hook(spec, "checkpoint_files")
    optional = [RemoteFile(name, name, optional=True) for name in (extra(dtype) if extra else [])]
    return [RemoteFile(name, name) for name in required_files(spec, dtype)] + optional


def _family_hook(spec: ModelSpec, name: str):
    """The family onnx module's function ``name``, or None where the family has no such hook."""
    from memesearch.ml import families

    return getattr(families.family_module("onnx", spec.family), name, None)


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
        files = remote_files(spec, chosen)
    except ModelUnavailableError as exc:
        result.unknown_reason = exc.message
        return result
    for remote in files:
        path = directory / remote.local_path
        if path.is_file():
            result.present.append(remote.local_path)
            result.total_bytes += path.stat().st_size
        else:
            (result.optional_missing if remote.optional else result.missing).append(remote.local_path)
    describe = _family_hook(spec, "decoder_line")
    if describe and result.complete and directory.is_dir():
        result.decoder = describe(directory, chosen, spec.sources.onnx)
    return result


def _offline_error(spec: ModelSpec, files: list[RemoteFile], why: str) -> DownloadError:
    urls = "\n".join(f"    {file_url(spec, remote)}" + ("  (optional)" if remote.optional else "") for remote in files)
    names = ", ".join(remote.repo_path for remote in files)
    packed = " (.gz files may be unpacked or not)" if any(r.repo_path.endswith(".gz") for r in files) else ""
    return DownloadError(
        f"Cannot download {spec.id}: {why}.\nFetch these files by hand (revision {spec.sources.onnx.revision}):\n{urls}",
        hint=(
            f"put them in one folder, {_layout_rule(files)} ({names}){packed}, "
            f"then run: memesearch models pull {spec.id} --from FOLDER"
        ),
    )


def _layout_rule(files: list[RemoteFile]) -> str:
    names = [Path(remote.local_path).name for remote in files]
    return "keeping the sub-folders" if len(set(names)) < len(names) else "keeping sub-folders or not"


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
        pool.submit(connect).result(timeout=PROBE_TIMEOUT_S + 0.5)
        return None
    except FutureTimeout:
        return f"{parsed.hostname}:{port} did not answer within {PROBE_TIMEOUT_S + 0.5:.0f} s"
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
    on_progress=None,
    cancel: threading.Event | None = None,
    transfer: Transfer | None = None,
) -> FilesStatus:
    """Download (or copy from ``from_dir``) the files for ``dtype``; returns the new status.

    Without ``on_progress`` a Rich progress bar (bytes, speed, time left) is drawn on ``console``.
    """
    chosen = onnx_dtype(spec, dtype)
    files = remote_files(spec, chosen)
    target = model_dir(spec, models_dir)
    target.mkdir(parents=True, exist_ok=True)
    if from_dir is not None:
        _copy_from(spec, files, Path(from_dir), target)
    else:
        if on_progress is None:
            _preflight(spec, files)  # an offline machine gets the message, not an empty bar
            with _rich_bar(spec, console or Console(stderr=True)) as draw:
                _download(spec, files, target, transfer=transfer, on_progress=draw, cancel=cancel)
        else:
            _download(spec, files, target, transfer=transfer, on_progress=on_progress, cancel=cancel)
    after = _family_hook(spec, "after_pull")
    # Both ways above raise unless every required file is installed, so the work after the pull
    # needs no status of its own: the one status below, taken after it, shows its outcome.
    if after:
        if on_progress is None:  # a terminal: the work after the download can take a minute
            with (console or Console(stderr=True)).status(f"{spec.id}: preparing the downloaded files ..."):
                after(target, chosen, spec.sources.onnx)
        else:
            after(target, chosen, spec.sources.onnx)
    return status(spec, models_dir, chosen)


class DownloadCancelled(DownloadError):
    """Stopped on request; the partial files stay, so the next pull resumes."""


@dataclass
class Transfer:
    """Live progress of one pull, updated while bytes arrive (the web page polls a copy)."""

    model_id: str
    total_bytes: int | None = None
    done_bytes: int = 0
    #: Bytes that were already on disk when this pull started (resumed, not fetched now).
    resumed_bytes: int = 0
    current_file: str = ""
    files_done: int = 0
    files_total: int = 0
    started_at: float = field(default_factory=time.monotonic)

    @property
    def fraction(self) -> float | None:
        return self.done_bytes / self.total_bytes if self.total_bytes else None

    @property
    def rate_bps(self) -> float | None:
        elapsed = time.monotonic() - self.started_at
        fetched = self.done_bytes - self.resumed_bytes
        return fetched / elapsed if elapsed > 0.5 and fetched > 0 else None

    @property
    def eta_s(self) -> float | None:
        rate = self.rate_bps
        if not rate or not self.total_bytes:
            return None
        return max(0.0, (self.total_bytes - self.done_bytes) / rate)

    def as_dict(self) -> dict:
        fraction = self.fraction
        return {
            "bytes_done": self.done_bytes, "bytes_total": self.total_bytes,
            "percent": round(100 * fraction, 1) if fraction is not None else None,
            "rate_bps": self.rate_bps, "eta_s": self.eta_s, "file": self.current_file,
            "files_done": self.files_done, "files_total": self.files_total,
        }


#: Seconds to open a connection while downloading: a dead hub is known at once, while a
#: slow but working link still streams (the read timeout is generous).
CONNECT_TIMEOUT_S = 2.0
READ_TIMEOUT_S = 60.0
CHUNK_BYTES = 1 << 16
#: Where unfinished files wait inside the model directory (kept on cancel: pulls resume).
PARTIAL_DIR = ".partial"


def _client() -> httpx.Client:
    headers = {"User-Agent": "memesearch"}
    token = os.environ.get("HF_TOKEN") or os.environ.get("HUGGING_FACE_HUB_TOKEN")
    if token:
        headers["Authorization"] = f"Bearer {token}"
    timeout = httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
    return httpx.Client(timeout=timeout, follow_redirects=True, headers=headers)


def _remote_size(client: httpx.Client, url: str) -> int | None:
    """The file's size from a HEAD request (the hub's LFS redirects end at the real file)."""
    response = client.head(url)
    if response.status_code == 404:
        name = url.split("/resolve/", 1)[-1].split("/", 1)[-1]
        raise DownloadError(f"The hub has no file {name} for this model.", details=url,
                            hint="check HF_ENDPOINT, or the repo and revision in models.yml")
    response.raise_for_status()
    size = response.headers.get("x-linked-size") or response.headers.get("content-length")
    return int(size) if size and size.isdigit() else None


def _download(spec: ModelSpec, files: list[RemoteFile], target: Path, *, transfer: Transfer | None = None,
              on_progress=None, cancel: threading.Event | None = None) -> None:
    """Fetch the files not yet installed, resuming partial ones with HTTP Range requests.

    ``on_progress(transfer)`` is called as bytes arrive; setting ``cancel`` stops between
    chunks with DownloadCancelled (partial files are kept for the next pull).
    """
    _preflight(spec, files)
    transfer = transfer or Transfer(spec.id)
    todo = [remote for remote in files if not (target / remote.local_path).is_file()]
    transfer.files_total, transfer.files_done = len(files), len(files) - len(todo)
    notify = on_progress or (lambda _transfer: None)
    with _client() as client:
        try:
            sizes = {}
            for remote in list(todo):
                try:
                    sizes[remote.repo_path] = _remote_size(client, file_url(spec, remote))
                except DownloadError:
                    if not remote.optional:
                        raise
                    todo.remove(remote)  # not on the hub (a checkpoint in another format): runs without it
                    transfer.files_total -= 1
        except httpx.HTTPError as exc:
            raise _offline_error(spec, files, f"asking the hub for file sizes failed ({exc.__class__.__name__}: {exc})") from exc
        known = [size for size in sizes.values() if size is not None]
        transfer.total_bytes = sum(known) if len(known) == len(sizes) else None
        partials = {remote.repo_path: _partial_path(target, remote) for remote in todo}
        transfer.resumed_bytes = transfer.done_bytes = sum(p.stat().st_size for p in partials.values() if p.is_file())
        notify(transfer)
        for remote in todo:
            transfer.current_file = remote.repo_path
            partial = partials[remote.repo_path]
            try:
                _fetch_one(client, file_url(spec, remote), partial, sizes[remote.repo_path], transfer, notify, cancel)
            except httpx.HTTPError as exc:
                raise _offline_error(spec, files, f"fetching {remote.repo_path} failed ({exc.__class__.__name__}: {exc})") from exc
            destination = target / remote.local_path
            if remote.repo_path != remote.local_path:
                _install(partial, destination, packed=True)  # gunzip
            else:
                destination.parent.mkdir(parents=True, exist_ok=True)
                os.replace(partial, destination)  # complete and checked: becomes visible at once
            partial.unlink(missing_ok=True)
            transfer.files_done += 1
            notify(transfer)
    shutil.rmtree(target / PARTIAL_DIR, ignore_errors=True)


def _preflight(spec: ModelSpec, files: list[RemoteFile]) -> None:
    """Fail within seconds, before any progress bar, when the hub cannot be reached."""
    if hub_offline():
        raise _offline_error(spec, files, "HF_HUB_OFFLINE is set")
    problem = probe_hub()
    if problem:
        raise _offline_error(spec, files, problem)


def _partial_path(target: Path, remote: RemoteFile) -> Path:
    return target / PARTIAL_DIR / (remote.repo_path + ".part")


def _fetch_one(client: httpx.Client, url: str, partial: Path, size: int | None, transfer: Transfer, notify,
               cancel: threading.Event | None) -> None:
    partial.parent.mkdir(parents=True, exist_ok=True)
    have = partial.stat().st_size if partial.is_file() else 0
    if size is not None and have == size:
        return  # finished before a cancel or crash; only the install was left
    if size is not None and have > size:
        partial.unlink()  # not a prefix of this file (the remote changed): start again
        transfer.done_bytes -= have
        have = 0
    headers = {"Range": f"bytes={have}-"} if have else {}
    with client.stream("GET", url, headers=headers) as response:
        if response.status_code == 404:
            raise DownloadError("The hub has no file at this address.", details=url)
        response.raise_for_status()
        if have and response.status_code != 206:
            transfer.done_bytes -= have  # the server ignored the range: the whole file comes again
            have = 0
        with open(partial, "ab" if have else "wb") as out:
            for chunk in response.iter_bytes(CHUNK_BYTES):
                if cancel is not None and cancel.is_set():
                    raise DownloadCancelled(
                        f"download of {transfer.model_id} cancelled; pulling it again resumes where it stopped"
                    )
                out.write(chunk)
                transfer.done_bytes += len(chunk)
                notify(transfer)
    got = partial.stat().st_size
    if size is not None and got != size:
        raise DownloadError(f"{url}: got {got} of {size} bytes; pull again to resume")


@contextmanager
def _rich_bar(spec: ModelSpec, console: Console) -> Iterator:
    """A terminal progress bar with bytes, speed and time left; yields the progress callback."""
    columns = (TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
               TimeRemainingColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(spec.id, total=None)

        def draw(transfer: Transfer) -> None:
            progress.update(task, total=transfer.total_bytes, completed=transfer.done_bytes,
                            description=f"{spec.id} {transfer.files_done}/{transfer.files_total} files")

        yield draw


def _install(source: Path, destination: Path, *, packed: bool | None = None) -> None:
    """Place one file, gunzipping ``.gz`` files; writes via a temp name so a crash leaves no half file."""
    destination.parent.mkdir(parents=True, exist_ok=True)
    partial = destination.with_name(destination.name + ".partial")
    if packed is None:
        packed = source.suffix == ".gz" and destination.suffix != ".gz"
    if packed:
        with gzip.open(source, "rb") as packed, open(partial, "wb") as out:
            shutil.copyfileobj(packed, out, length=1 << 20)
        if source.parent == destination.parent or destination.parent in source.parents:
            source.unlink(missing_ok=True)  # the unpacked copy is what the runtime reads
    elif source.resolve() == destination.resolve():
        return
    else:
        shutil.copyfile(source, partial)
    os.replace(partial, destination)


def _find_in(folder: Path, remote: RemoteFile, *, flat_ok: bool = True) -> Path | None:
    """A manually fetched file: same sub-path, or flattened (unless ``flat_ok`` is False: two
    required files share the name, like CLIP's visual/ and textual/ model.onnx), packed or unpacked."""
    candidates = [remote.repo_path, remote.local_path]
    if flat_ok:
        candidates += [Path(remote.repo_path).name, Path(remote.local_path).name]
    for name in dict.fromkeys(candidates):
        path = folder / name
        if path.is_file():
            return path
    return None


def _copy_from(spec: ModelSpec, files: list[RemoteFile], folder: Path, target: Path) -> None:
    if not folder.is_dir():
        raise DownloadError(f"--from {folder}: not a folder")
    names = [Path(remote.local_path).name for remote in files]
    found = {remote.local_path: _find_in(folder, remote, flat_ok=names.count(Path(remote.local_path).name) == 1)
             for remote in files}
    missing = [remote.local_path for remote in files if found[remote.local_path] is None and not remote.optional]
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
        if found[remote.local_path] is not None:
            _install(found[remote.local_path], target / remote.local_path)
