"""`memesearch db migrate` and `memesearch db copy`: database schema and moving a library to PostgreSQL."""

from __future__ import annotations

import json
from typing import Annotated, Optional

import typer
from rich.table import Table

from memesearch.cli.context import console, friendly_errors, settings_of
from memesearch.cli.progress import stage_bars
from memesearch.errors import ConfigError

db_app = typer.Typer(help="Database schema and moving a library between databases.", no_args_is_help=True)


def _postgres_url(url: str) -> str:
    if not url.startswith(("postgresql://", "postgres://")):
        raise ConfigError(f"not a PostgreSQL URL: {url!r}", hint="use postgresql://USER:PASSWORD@HOST:5432/DATABASE")
    return url


@db_app.command("migrate")
@friendly_errors
def migrate(
    ctx: typer.Context,
    url: Annotated[Optional[str], typer.Option("--url", help="Database URL (default: the configured database).")] = None,
) -> None:
    """Bring the database schema up to date (safe to run any time; refuses a newer schema)."""
    settings = settings_of(ctx)
    url = url or settings.database_url
    if url and url.startswith(("postgresql://", "postgres://")):
        from memesearch.store.postgres import PostgresStore

        store = PostgresStore(url, migrate=False)
        ran = store.migrate()
    else:
        from memesearch.store.sqlite import SqliteStore

        path = url.removeprefix("sqlite:///") if url else settings.database_path
        store = SqliteStore(path)  # migrates on open
        ran = None
    try:
        done = "" if ran is None else f" ({ran} migration{'s' if ran != 1 else ''} applied)"
        console.print(f"{store.kind} schema version {store.schema_version}{done}")
    finally:
        store.close()


@db_app.command("copy")
@friendly_errors
def copy(
    source: Annotated[str, typer.Option("--from", help="Source library: sqlite:///PATH/TO/memesearch.db")],
    target: Annotated[str, typer.Option("--to", help="Empty target database: postgresql://USER:PASSWORD@HOST/DB")],
    json_: Annotated[bool, typer.Option("--json", help="Print the verification counts as JSON.")] = False,
) -> None:
    """Copy a whole library (memes, texts, descriptions, tags, vectors, job state) into an empty PostgreSQL."""
    if not source.startswith("sqlite:///"):
        raise ConfigError(f"unsupported source {source!r}", hint="db copy reads a SQLite library: --from sqlite:///PATH")
    from memesearch.store.copy import copy_sqlite_to_postgres
    from memesearch.store.postgres import PostgresStore

    store = PostgresStore(_postgres_url(target))
    try:
        with stage_bars(not json_) as bars:
            report = copy_sqlite_to_postgres(source.removeprefix("sqlite:///"), store, progress=bars.update)
    finally:
        store.close()
    if json_:
        typer.echo(json.dumps(report))
        return
    table = Table("table", "source rows", "target rows", title="db copy: verified")
    for name, counts in report["tables"].items():
        table.add_row(name, str(counts["source"]), str(counts["target"]))
    console.print(table)
    if report["skipped"]:
        console.print(f"[yellow]not copied (no such table in the target):[/] {', '.join(report['skipped'])}")


def register(app: typer.Typer) -> None:
    app.add_typer(db_app, name="db", help="Database schema (migrate) and moving a library to PostgreSQL (copy).")
