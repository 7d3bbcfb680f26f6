"""`memesearch demo`: render sample memes, index them and search — the quick start."""

from __future__ import annotations

from typing import Annotated

import typer

from memesearch.app import Core
from memesearch.cli.context import console, friendly_errors, settings_of
from memesearch.cli.progress import stage_bars
from memesearch.cli.search_cmds import _print_result
from memesearch.library.indexing import run_index

DEMO_QUERIES = ("one does not simply", "cat keyboard", "monday morning coffee")


def register(app: typer.Typer) -> None:
    @app.command()
    @friendly_errors
    def demo(
        ctx: typer.Context,
        count: Annotated[int, typer.Option(min=1, max=500, help="How many sample memes to render.")] = 24,
        query: Annotated[list[str], typer.Option(help="Queries to run after indexing.")] = list(DEMO_QUERIES),
    ) -> None:
        """Render sample memes into the data dir, index them, and run a few searches."""
        from memesearch.library.samples import render_sample_memes

        core = Core(settings_of(ctx))
        samples_dir = core.settings.home / "samples"
        if not samples_dir.is_dir() or not any(samples_dir.iterdir()):
            samples = render_sample_memes(samples_dir, count=count)
            console.print(f"rendered {len(samples)} sample memes into {samples_dir}", highlight=False)
        core.store.add_folder(str(samples_dir.resolve()))
        with stage_bars() as bars:
            summary = run_index(core, progress=bars.update)
        console.print(f"indexed: {summary['counts']['ok']} memes, {summary['counts']['vectors']} vectors")
        for text in query:
            console.rule(f"search: {text}")
            _print_result(core.search_engine.search(text, limit=3))
        console.print(f'\ntry: memesearch --data-dir {core.settings.home} search "your words"', highlight=False)
