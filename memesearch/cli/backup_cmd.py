"""`memesearch backup FILE`: a consistent copy of the library, safe while the app runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from memesearch.app import Core
from memesearch.cli.context import console, friendly_errors, settings_of
from memesearch.cli.output import shown
from memesearch.store.backup import backup_library, postgres_refusal


def register(app: typer.Typer) -> None:
    @app.command()
    @friendly_errors
    def backup(
        ctx: typer.Context,
        file: Annotated[Path, typer.Argument(help="Where to write the copy (a new .db file).")],
        force: Annotated[bool, typer.Option("--force", help="Replace FILE if it exists.")] = False,
        json_: Annotated[bool, typer.Option("--json")] = False,
    ) -> None:
        """Copy the SQLite library to FILE while memesearch keeps running (PostgreSQL: use pg_dump)."""
        settings = settings_of(ctx)
        if settings.database_url.startswith(("postgresql://", "postgres://")):
            raise postgres_refusal()  # before connecting: the answer does not depend on the server
        core = Core(settings)
        result = backup_library(core.store, file, overwrite=force)
        if json_:
            print(json.dumps(result, ensure_ascii=False))
            return
        console.print(f"backed up {result['memes']} memes to {shown(result['path'])} "
                      f"({result['bytes'] / 1e6:.1f} MB)", highlight=False)
