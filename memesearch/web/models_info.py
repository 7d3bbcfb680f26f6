"""Caption models for the models page: status rows, pulls and the `models check` matrix.

Pulls and checks can take minutes, so they run in a background thread and the
page polls their state; ``background`` is the app's dict of such tasks.
"""

from __future__ import annotations

import io
import threading
import time
from dataclasses import asdict

from rich.console import Console

from memesearch.errors import InvalidInputError
from memesearch.ml.chain import failure_reason
from memesearch.ml.check import would_run

_lock = threading.Lock()
_spec_cache: dict[tuple, list[str]] = {}


def model_ids(settings) -> list[str]:
    """Ids of the known models; the registry is re-read only when the user's models.yml changes
    (parsing and validating it costs tens of milliseconds, too much for every meme page)."""
    from memesearch.ml.registry import list_specs, user_registry_path

    user_file = user_registry_path(settings.home)
    try:
        stamp = user_file.stat().st_mtime_ns
    except OSError:
        stamp = None
    key = (str(settings.home), stamp)
    if key not in _spec_cache:
        _spec_cache.clear()
        _spec_cache[key] = [spec.id for spec in list_specs(settings.home)]
    return _spec_cache[key]


def offered_caption_models(settings) -> list[str]:
    """Caption models a person may pick as the default: the test-only ``fake`` model only with MEMESEARCH_DEV=1."""
    import os

    dev = os.environ.get("MEMESEARCH_DEV", "").strip() == "1"
    return [m for m in model_ids(settings) if dev or m != "fake"]


def model_rows(settings) -> list[dict]:
    from memesearch.ml.download import status
    from memesearch.ml.registry import list_specs

    rows = []
    for spec in list_specs(settings.home):
        files = status(spec, settings.models_dir) if spec.sources.onnx else None
        backend, reasons = would_run(spec, settings)
        if files is None:
            present = "no files needed"
        elif files.unknown_reason:
            present = "unknown"
        else:
            present = f"{len(files.present)}/{len(files.present) + len(files.missing)} files"
        rows.append({
            "id": spec.id, "family": spec.family, "size": spec.size, "description": spec.description,
            "files": present, "bytes": files.total_bytes if files else 0,
            "downloadable": spec.sources.onnx is not None, "complete": bool(files and files.complete),
            "backend": backend, "unavailable_because": reasons, "default": spec.id == settings.caption_model,
        })
    return rows


def _task(background: dict, key: str) -> dict | None:
    with _lock:
        task = background.get(key)
        return dict(task) if task else None


def _run_in_background(background: dict, key: str, work) -> dict:
    with _lock:
        current = background.get(key)
        if current and current["state"] == "running":
            return dict(current)
        background[key] = {"state": "running", "started_at": time.time(), "error": None, "result": None}

    def runner() -> None:
        try:
            result = work()
        except Exception as exc:  # reported to the page, which shows the reason and the fix
            update = {"state": "failed", "error": failure_reason(exc)}
        else:
            update = {"state": "done", "result": result}
        with _lock:
            background[key].update(update, finished_at=time.time())

    threading.Thread(target=runner, name=f"web-{key}", daemon=True).start()
    return _task(background, key)


def start_pull(background: dict, settings, model_id: str, dtype: str | None) -> dict:
    from memesearch.ml.download import pull
    from memesearch.ml.registry import get_spec

    spec = get_spec(model_id, settings.home)
    if spec.sources.onnx is None:
        raise InvalidInputError(f"{spec.id} has no files to download (backends: {', '.join(spec.backends)})")

    def work() -> dict:
        quiet = Console(file=io.StringIO(), force_terminal=False)
        result = pull(spec, settings.models_dir, dtype, console=quiet)
        return {"present": len(result.present), "bytes": result.total_bytes}

    _run_in_background(background, f"pull:{spec.id}", work)
    return pull_status(background, settings, spec.id)


def pull_status(background: dict, settings, model_id: str) -> dict:
    """The pull's state plus live progress: files already in place out of those needed."""
    from memesearch.ml.download import status
    from memesearch.ml.registry import get_spec

    spec = get_spec(model_id, settings.home)
    task = _task(background, f"pull:{spec.id}") or {"state": "idle", "error": None, "result": None}
    files = status(spec, settings.models_dir) if spec.sources.onnx else None
    total = len(files.present) + len(files.missing) if files else 0
    return task | {"model": spec.id, "files_present": len(files.present) if files else 0, "files_total": total}


def start_check(background: dict, settings) -> dict:
    from memesearch.ml.check import check_installed

    def work() -> list[dict]:
        return [asdict(row) | {"failed": row.failed} for row in check_installed(settings, tokens=4)]

    return _run_in_background(background, "check", work)


def check_status(background: dict) -> dict:
    return _task(background, "check") or {"state": "idle", "error": None, "result": None}
