"""First use of a caption model that is not downloaded: ask, then download with progress.

`memesearch index --describe` calls this before any work: a ready model passes
through; a missing one is downloaded after a yes (or with ``--yes``). Without a
terminal to ask on and without ``--yes`` it stops (exit 2) naming the pull
command, and when the hub cannot be reached it says so in one sentence.
"""

from __future__ import annotations

import sys

import typer

from memesearch.cli.context import err_console
from memesearch.config import Settings
from memesearch.ml import download, readiness
from memesearch.ml.registry import ModelSpec


def can_ask() -> bool:
    """A person at a terminal can answer a question (not a script, pipe or service)."""
    return sys.stdin.isatty()


def ensure_model(settings: Settings, model_id: str, *, yes: bool) -> ModelSpec:
    spec = readiness.listed_spec(model_id, settings)
    state = readiness.check(spec, settings)
    if state.ready:
        return spec
    error = state.error(spec)
    if not state.downloadable:
        raise error
    if not yes and not can_ask():
        error.hint = f"memesearch models pull {spec.id}   (or run again with --yes to download it first)"
        raise error
    problem = "HF_HUB_OFFLINE is set" if download.hub_offline() else download.probe_hub()
    if problem:
        raise download.DownloadError(
            f"The model {spec.id} is not downloaded and this machine is offline ({problem}).",
            hint=f"connect to the internet and run: memesearch models pull {spec.id}  "
                 f"(or fetch the files elsewhere and use: memesearch models pull {spec.id} --from FOLDER)",
            details="\n".join(state.reasons) or None,
        )
    size = readiness.download_size_mb(spec)
    question = f"The model {spec.id} is not downloaded yet. Download it now" + (f" (about {size} MB)?" if size else "?")
    if not yes and not typer.confirm(question, default=True, err=True):
        raise error
    download.pull(spec, settings.models_dir, console=err_console)
    return spec
