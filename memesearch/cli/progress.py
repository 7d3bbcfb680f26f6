"""Rich progress display for long work (scan, OCR, embedding): counts, rate and ETA."""

from __future__ import annotations

from contextlib import contextmanager

from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from memesearch.cli.context import err_console


class RateColumn(ProgressColumn):
    """Items per second, e.g. '3.2/s'."""

    def render(self, task) -> Text:
        speed = task.finished_speed or task.speed
        return Text("" if speed is None else f"{speed:.1f}/s", style="cyan")


class StageBars:
    """One bar per stage, created on first report; ``update`` matches Pipeline's progress callback."""

    def __init__(self, progress: Progress | None) -> None:
        self._progress = progress
        self._tasks: dict[str, int] = {}

    def update(self, stage: str, done: int, total: int | None) -> None:
        if self._progress is None:
            return
        if stage not in self._tasks:
            self._tasks[stage] = self._progress.add_task(stage, total=total)
        self._progress.update(self._tasks[stage], completed=done, total=total)


@contextmanager
def stage_bars(enabled: bool = True):
    """Progress bars on stderr, so stdout stays clean for --json."""
    if not enabled:
        yield StageBars(None)
        return
    progress = Progress(
        SpinnerColumn(), TextColumn("[bold]{task.description:<6}"), BarColumn(), MofNCompleteColumn(),
        RateColumn(), TimeElapsedColumn(), TextColumn("eta"), TimeRemainingColumn(), console=err_console,
    )
    with progress:
        yield StageBars(progress)
