"""Template groups: list them, name them, and regroup from scratch."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from memesearch.app import Core
from memesearch.cli.context import console, friendly_errors, settings_of
from memesearch.store.templates import TemplateStore

templates_app = typer.Typer(help="Memes made from the same picture (template groups).", no_args_is_help=False,
                            invoke_without_command=True)


def register(app: typer.Typer) -> None:
    @templates_app.callback()
    @friendly_errors
    def list_groups(ctx: typer.Context, json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
        """List groups of two or more memes that share their picture (found by `memesearch index`)."""
        if ctx.invoked_subcommand is not None:
            return
        groups = TemplateStore(Core(settings_of(ctx)).store).groups()
        if json_:
            print(json.dumps({"groups": groups}, ensure_ascii=False))
            return
        if not groups:
            console.print("no template groups yet: `memesearch index` finds memes that share a picture")
            return
        table = Table()
        for column in ("group", "name", "memes", "example"):
            table.add_column(column, overflow="fold")
        for group in groups:
            table.add_row(str(group["id"]), group["name"] or "", str(group["size"]), group["members"][0]["path"])
        console.print(table)

    @templates_app.command("name")
    @friendly_errors
    def name(ctx: typer.Context, group_id: Annotated[int, typer.Argument(help="Group id (see `memesearch templates`).")],
             new_name: Annotated[str, typer.Argument(help="The template's name; empty to clear it.")]) -> None:
        """Name a template group: the name finds every member in search."""
        core = Core(settings_of(ctx))
        TemplateStore(core.store).set_name(group_id, new_name)
        console.print(f"group {group_id} named {new_name!r}" if new_name.strip() else f"group {group_id} unnamed",
                      highlight=False)

    app.add_typer(templates_app, name="templates")
