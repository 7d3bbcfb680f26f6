"""What every CLI command shares: the settings and the error translation.

Errors are translated for people in exactly one place, the ``friendly_errors``
decorator every command wears: a MemeSearchError prints its message and hint and
exits with status 2; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import typer
from rich.console import Console

from memesearch.cli.output import printable, shown
from memesearch.config import Settings
from memesearch.errors import InvalidInputError, MemeSearchError
from memesearch.unicode_input import has_lone_surrogate

console = Console()
err_console = Console(stderr=True)

F = TypeVar("F", bound=Callable)


def settings_of(ctx: typer.Context) -> Settings:
    """The Settings built by the top-level callback (``--data-dir`` applied)."""
    root = ctx.find_root()
    if not isinstance(root.obj, Settings):
        raise RuntimeError("CLI context has no settings; was the root callback skipped?")
    return root.obj


#: Set by the root `--verbose` flag: errors then also print their technical details.
VERBOSE = False


def print_error(exc: MemeSearchError) -> None:
    """The one place a MemeSearchError is shown to a person (soft wrap keeps URLs copyable):
    one sentence, the fix, and the technical details only with --verbose."""
    err_console.print(f"[bold red]error:[/] {shown(exc.message)}", highlight=False, soft_wrap=True)
    if exc.hint:
        err_console.print(f"[yellow]hint:[/] {shown(exc.hint)}", highlight=False, soft_wrap=True)
    details = getattr(exc, "details", None)
    if details and VERBOSE:
        lines = "\n".join(printable(line) for line in str(details).splitlines())  # keep its lines, escape the rest
        err_console.print(f"details:\n{lines}", highlight=False, soft_wrap=True, markup=False)
    elif details:
        err_console.print("(run with --verbose for details)", highlight=False, style="dim")


def check_arguments(arguments: dict) -> None:
    """InvalidInputError for an argument that is not valid UTF-8 (Python keeps such bytes as lone
    surrogates, which no database or model accepts), naming the argument."""
    for name, value in arguments.items():
        values = value if isinstance(value, list | tuple) else [value]
        for item in values:
            if isinstance(item, str | Path) and has_lone_surrogate(str(item)):
                raise InvalidInputError(f"the argument {name.rstrip('_').upper()} is not valid UTF-8: {printable(item)}",
                                        hint="pass text and paths encoded as UTF-8 (check the terminal's locale)")


def friendly_errors(func: F) -> F:
    """Decorator for commands: MemeSearchError -> message on stderr, exit code 2."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            check_arguments(kwargs)
            return func(*args, **kwargs)
        except MemeSearchError as exc:
            print_error(exc)
            sys.exit(2)

    return wrapper  # type: ignore[return-value]
