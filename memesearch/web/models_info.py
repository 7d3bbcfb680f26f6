"""Caption models for the models page: status rows, pulls and the `models check` matrix.

Pulls and checks can take minutes, so they run in a background thread and the
page polls their state; ``background`` is the app's dict of such tasks.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict

from memesearch.errors import InvalidInputError
from memesearch.ml.failures import failure_reason, first_sentence

_lock = threading.Lock()
_spec_cache: dict[tuple, list[str]] = {}


def model_ids(settings) -> list[str]:
    """Ids of the known models; the registry is re-read only when the user's models.yml changes
    (parsing and validating it costs tens of milliseconds, too much for every meme page)."""
    from memesearch.ml.readiness import listed_specs
    from memesearch.ml.registry import user_registry_path

    user_file = user_registry_path(settings.home)
    try:
        stamp = user_file.stat().st_mtime_ns
    except OSError:
        stamp = None
    key = (str(settings.home), stamp, settings.dev)
    if key not in _spec_cache:
        _spec_cache.clear()
        _spec_cache[key] = [spec.id for spec in listed_specs(settings)]
    return _spec_cache[key]


def offered_caption_models(settings) -> list[str]:
    """Caption models a person may pick as the default: onboard's one rule (ml.readiness.listed_specs),
    so the developer-only ``fake`` model only with MEMESEARCH_DEV=1."""
    return model_ids(settings)


def model_rows(settings) -> list[dict]:
    from memesearch.ml.download import status
    from memesearch.ml.readiness import check as readiness_check
    from memesearch.ml.readiness import download_label, download_size_mb, listed_specs

    rows = []
    for spec in listed_specs(settings):
        files = status(spec, settings.models_dir) if spec.sources.onnx else None
        state = readiness_check(spec, settings)
        backend, reasons = state.backend, state.reasons
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
            "backend": backend, "ready": backend != "none", "unavailable_because": reasons,
            "decoder": files.decoder if files else None,
            "default": spec.id == settings.caption_model,
            "download_label": download_label(spec), "download_mb": download_size_mb(spec),
        })
    return rows


def _task(background: dict, key: str) -> dict | None:
    with _lock:
        task = background.get(key)
        return dict(task) if task else None


def _run_in_background(background: dict, key: str, work, extras: dict | None = None) -> dict:
    """Run ``work`` in a thread unless the task ``key`` is running already; ``extras`` (such as a
    download's live progress) are stored beside the task in the same step, so they always
    belong to the thread that runs."""
    with _lock:
        current = background.get(key)
        if current and current["state"] == "running":
            return dict(current)
        background[key] = {"state": "running", "started_at": time.time(), "error": None, "result": None}
        background.update(extras or {})

    def runner() -> None:
        from memesearch.ml.download import DownloadCancelled

        try:
            result = work()
        except DownloadCancelled as exc:
            update = {"state": "cancelled", "error": exc.message}
        except Exception as exc:  # reported to the page: one sentence first, the rest folded away
            full = failure_reason(exc)
            extra = "\n".join(part for part in (getattr(exc, "details", None), full) if part)
            update = {"state": "failed", "error": first_sentence(exc), "details": extra}
        else:
            update = {"state": "done", "result": result}
        with _lock:
            background[key].update(update, finished_at=time.time())

    threading.Thread(target=runner, name=f"web-{key}", daemon=True).start()
    return _task(background, key)


def start_pull(background: dict, settings, model_id: str, dtype: str | None) -> dict:
    """Start downloading in a background thread (or report the one already running)."""
    from memesearch.ml.download import Transfer, pull
    from memesearch.ml.readiness import listed_spec

    spec = listed_spec(model_id, settings)
    if spec.sources.onnx is None:
        raise InvalidInputError(f"{spec.id} has no files to download (backends: {', '.join(spec.backends)})")
    transfer, cancel = Transfer(spec.id), threading.Event()

    def work() -> dict:
        result = pull(spec, settings.models_dir, dtype, transfer=transfer, on_progress=lambda _t: None, cancel=cancel)
        return {"present": len(result.present), "bytes": result.total_bytes}

    # A pull already running keeps its own progress; these new objects are then dropped.
    _run_in_background(background, f"pull:{spec.id}", work, {f"transfer:{spec.id}": (transfer, cancel)})
    return pull_status(background, settings, spec.id)


def pull_states(background: dict) -> dict[str, str]:
    """model id -> state of its latest pull in this process (running, done, failed, cancelled)."""
    with _lock:
        return {key.split(":", 1)[1]: task["state"] for key, task in background.items() if key.startswith("pull:")}


def cancel_pull(background: dict, settings, model_id: str) -> dict:
    from memesearch.ml.readiness import listed_spec

    spec = listed_spec(model_id, settings)
    with _lock:
        entry = background.get(f"transfer:{spec.id}")
    if entry is not None:
        entry[1].set()
    return pull_status(background, settings, spec.id)


def pull_status(background: dict, settings, model_id: str) -> dict:
    """The pull's state plus live progress: bytes, percent, speed, time left and files."""
    from memesearch.ml.download import status
    from memesearch.ml.readiness import listed_spec

    spec = listed_spec(model_id, settings)
    task = _task(background, f"pull:{spec.id}") or {"state": "idle", "error": None, "result": None}
    files = status(spec, settings.models_dir) if spec.sources.onnx else None
    total = len(files.present) + len(files.missing) if files else 0
    with _lock:
        entry = background.get(f"transfer:{spec.id}")
        progress = entry[0].as_dict() if entry else {}
    return task | progress | {"model": spec.id, "files_present": len(files.present) if files else 0, "files_total": total}


def start_check(background: dict, settings) -> dict:
    from memesearch.ml.check import check_installed

    def work() -> list[dict]:
        return [asdict(row) | {"failed": row.failed} for row in check_installed(settings, tokens=4)]

    return _run_in_background(background, "check", work)


def check_status(background: dict) -> dict:
    return _task(background, "check") or {"state": "idle", "error": None, "result": None}
