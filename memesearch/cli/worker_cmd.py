"""`memesearch worker` and `memesearch jobs start|list|show|cancel|retry`."""

from __future__ import annotations

import json
import signal
import threading
import time
from typing import Annotated, Optional

import typer
from rich.table import Table

from memesearch.app import Core
from memesearch.cli.context import console, err_console, friendly_errors, settings_of


def _fmt_rate(run) -> str:
    return "" if run.rate_per_s is None else f"{run.rate_per_s:.1f}/s"


def _fmt_eta(run) -> str:
    return "" if run.eta_s is None else f"{run.eta_s:.0f}s"


def watch(core: Core, run_id: int, poll_s: float = 0.5):
    """A Rich progress bar over a run until it ends (Ctrl-C stops watching, not the run)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(TextColumn("[bold]run {task.fields[run]}"), BarColumn(), MofNCompleteColumn(),
                        TextColumn("{task.fields[rate]} eta {task.fields[eta]} failed {task.fields[failed]}"),
                        TimeElapsedColumn(), console=err_console)
    with progress:
        task = progress.add_task("run", total=None, run=run_id, rate="", eta="", failed=0)
        while True:
            run = core.jobs.get(run_id)
            progress.update(task, total=run.total or None, completed=run.done + run.failed,
                            rate=_fmt_rate(run), eta=_fmt_eta(run), failed=run.failed)
            if not run.active:
                return run
            time.sleep(poll_s)


def register(app: typer.Typer) -> None:
    @app.command()
    @friendly_errors
    def worker(
        ctx: typer.Context,
        concurrency: Annotated[Optional[int], typer.Option("--concurrency", "-c", help="Worker threads (default: worker_concurrency).")] = None,
    ) -> None:
        """Process queued runs (describe, index, ...) until stopped with Ctrl-C or SIGTERM."""
        from memesearch.jobs.worker import WorkerHandle

        settings = settings_of(ctx)
        core = Core(settings)
        core.require_writable("run jobs")
        handle = WorkerHandle(core, concurrency or settings.worker_concurrency).start()
        stopped = threading.Event()

        def _stop(signum, frame) -> None:
            stopped.set()

        signal.signal(signal.SIGTERM, _stop)
        signal.signal(signal.SIGINT, _stop)
        err_console.print(f"worker: {handle.concurrency} thread(s), queue {settings.queue_url or 'sqlite'}; Ctrl-C stops")
        while not stopped.wait(0.5):
            pass
        err_console.print("worker: finishing the memes in hand ...")
        handle.stop()
        core.close()

    jobs_app = typer.Typer(help="Bulk runs: start, list, show, cancel, retry failed.", no_args_is_help=True)

    @jobs_app.command("start")
    @friendly_errors
    def start(
        ctx: typer.Context,
        kind: Annotated[str, typer.Argument(help="describe | index | ocr | embed")],
        model: Annotated[Optional[str], typer.Option("--model", help="Caption model (describe, index).")] = None,
        meme_id: Annotated[Optional[list[int]], typer.Option("--meme", help="Only these meme ids (repeatable).")] = None,
        folder_id: Annotated[Optional[int], typer.Option("--folder-id", help="index: only this folder.")] = None,
        wait: Annotated[bool, typer.Option("--wait", help="Show progress until the run ends (needs a running worker).")] = False,
    ) -> None:
        """Queue a run; `memesearch worker` (or `memesearch serve`) does the work."""
        core = Core(settings_of(ctx))
        core.require_writable("queue jobs")
        run = core.jobs.start(kind, model=model, meme_ids=meme_id or None, folder_id=folder_id)
        console.print(f"run {run.id}: {run.kind} of {run.total} memes queued", highlight=False)
        if wait:
            run = watch(core, run.id)
            console.print(f"run {run.id}: {run.state}, {run.done} done, {run.failed} failed", highlight=False)

    @jobs_app.command("list")
    @friendly_errors
    def list_(ctx: typer.Context, json_: Annotated[bool, typer.Option("--json")] = False,
              limit: Annotated[int, typer.Option("--limit")] = 20) -> None:
        """Recent runs with their progress."""
        runs = Core(settings_of(ctx)).jobs.list_runs(limit)
        if json_:
            print(json.dumps([run.as_dict() for run in runs], ensure_ascii=False))
            return
        table = Table("id", "kind", "model", "state", "done", "failed", "total", "rate", "eta")
        for run in runs:
            table.add_row(str(run.id), run.kind, run.model or "", run.state, str(run.done), str(run.failed),
                          str(run.total), _fmt_rate(run), _fmt_eta(run))
        console.print(table)

    @jobs_app.command("show")
    @friendly_errors
    def show(ctx: typer.Context, run_id: int) -> None:
        """One run as JSON, with its latest errors."""
        print(json.dumps(Core(settings_of(ctx)).jobs.get(run_id).as_dict(), ensure_ascii=False, indent=2))

    @jobs_app.command("cancel")
    @friendly_errors
    def cancel(ctx: typer.Context, run_id: int) -> None:
        """Stop a run: memes in progress finish, the rest are cancelled."""
        run = Core(settings_of(ctx)).jobs.cancel(run_id)
        console.print(f"run {run.id}: {run.state}", highlight=False)

    @jobs_app.command("retry")
    @friendly_errors
    def retry(ctx: typer.Context, run_id: int) -> None:
        """Queue the failed memes of a run again."""
        run = Core(settings_of(ctx)).jobs.retry_failed(run_id)
        console.print(f"run {run.id}: {run.state}, {run.queued} memes queued again", highlight=False)

    app.add_typer(jobs_app, name="jobs")
