"""The `memesearch` command. Thin: parse arguments, build core objects, call them, print."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Optional

import typer

from memesearch import __version__
from memesearch.cli import (
    backup_cmd,
    context,
    db_cmd,
    demo_cmd,
    edit_cmds,
    library_cmds,
    ml_cmd,
    search_cmds,
    serve_cmd,
    templates_cmd,
    worker_cmd,
)
from memesearch.cli.context import err_console, print_error
from memesearch.config import load_settings
from memesearch.errors import MemeSearchError

app = typer.Typer(
    name="memesearch",
    help="Find memes in your folders by the words in them, their template or what they are about.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"memesearch {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    data_dir: Annotated[
        Optional[Path],
        typer.Option("--data-dir", help="Data directory (default: $MEMESEARCH_HOME or the user data dir).", envvar=None),
    ] = None,
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log what happens (model loading, fallbacks).")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True, help="Show the version.")] = False,
) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    context.VERBOSE = verbose
    try:
        ctx.obj = load_settings(data_dir)
    except Exception as exc:  # pydantic ValidationError from a bad MEMESEARCH_* variable
        err_console.print(f"[bold red]error:[/] invalid settings: {exc}")
        raise typer.Exit(2) from exc


library_cmds.register(app)
search_cmds.register(app)
edit_cmds.register(app)
backup_cmd.register(app)
demo_cmd.register(app)
templates_cmd.register(app)
ml_cmd.register(app)
worker_cmd.register(app)
serve_cmd.register(app)
db_cmd.register(app)


from memesearch.cli.caption_cmd import caption  # noqa: E402
from memesearch.cli.models_cmd import models_app  # noqa: E402

app.add_typer(models_app, name="models", help="List, download, export and check image-to-text models.")
app.command("caption", help="Describe one image with a model (one-shot; prints JSON with --json).")(caption)


def main() -> None:
    try:
        app()
    except MemeSearchError as exc:  # errors raised outside a command body (e.g. while building objects)
        print_error(exc)
        raise SystemExit(2) from exc
