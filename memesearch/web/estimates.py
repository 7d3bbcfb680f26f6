"""How long a bulk describe run will take, said before it starts.

The time per meme is measured from this library's finished describe runs of the
same model when there are any (wall time over items, so it reflects this machine,
its worker count and the model's backend); otherwise it is the model's typical
CPU time from `seconds_per_meme` in models.yml, else DEFAULT_SECONDS_PER_MEME.
"""

from __future__ import annotations

from memesearch.ml.registry import get_spec

#: Used for a model whose models.yml entry gives no `seconds_per_meme` (a guess for a small VLM on a CPU).
DEFAULT_SECONDS_PER_MEME = 5.0
#: How many recent runs are searched for measurements.
RUNS_LOOKED_AT = 50


def seconds_per_meme(core, model_id: str) -> tuple[float, str]:
    """(seconds per meme, "measured" or "typical") for describing with ``model_id``."""
    seconds = items = 0.0
    for run in core.jobs.list_runs(RUNS_LOOKED_AT):
        if (run.kind == "describe" and run.model == model_id and run.state == "done"
                and run.started_at and run.finished_at and run.done + run.failed > 0):
            seconds += max(0.0, run.finished_at - run.started_at)
            items += run.done + run.failed
    if items:
        return seconds / items, "measured"
    typical = get_spec(model_id, core.settings.home).seconds_per_meme
    return (typical or DEFAULT_SECONDS_PER_MEME), "typical"


def human_duration(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return "less than a minute"
    if minutes < 60:
        return "1 minute" if minutes == 1 else f"{minutes} minutes"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def describe_estimate(core, model_id: str) -> dict:
    """What "describe all undescribed" with ``model_id`` would do, and for how long."""
    count = len(core.store.ids_without_description(model_id))
    per_meme, basis = seconds_per_meme(core, model_id)
    seconds = count * per_meme
    how = "measured here" if basis == "measured" else "typical on a CPU"
    noun = "meme" if count == 1 else "memes"
    text = (f"{count} {noun}, about {human_duration(seconds)} with {model_id} "
            f"({per_meme:.1f} s per meme, {how})") if count else f"Every meme already has a description from {model_id}."
    return {"model": model_id, "count": count, "seconds_per_meme": round(per_meme, 3), "basis": basis,
            "seconds": round(seconds, 1), "text": text}
