"""What people write: tags, descriptions, export and import."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from memesearch.app import Core
from memesearch.cli.context import console, friendly_errors, settings_of
from memesearch.cli.output import printable, shown
from memesearch.errors import InvalidInputError
from memesearch.store.transfer import export_library, import_library

tag_app = typer.Typer(help="Create, assign, remove and list tags.", no_args_is_help=True)


@tag_app.command("add")
@friendly_errors
def tag_add(ctx: typer.Context, meme_id: int, names: Annotated[list[str], typer.Argument(help="Tag names.")]) -> None:
    """Add tags to a meme (creating them if needed)."""
    core = Core(settings_of(ctx))
    core.store.add_tags(meme_id, names)
    console.print(f"meme {meme_id}: {shown(', '.join(core.store.get_meme(meme_id).tags))}", highlight=False)


@tag_app.command("remove")
@friendly_errors
def tag_remove(ctx: typer.Context, meme_id: int, names: Annotated[list[str], typer.Argument()]) -> None:
    """Remove tags from a meme."""
    core = Core(settings_of(ctx))
    core.store.remove_tags(meme_id, names)
    console.print(f"meme {meme_id}: {shown(', '.join(core.store.get_meme(meme_id).tags) or '(no tags)')}", highlight=False)


@tag_app.command("create")
@friendly_errors
def tag_create(ctx: typer.Context, name: str) -> None:
    """Create a tag without assigning it."""
    Core(settings_of(ctx)).store.create_tag(name)


@tag_app.command("list")
@friendly_errors
def tag_list(ctx: typer.Context) -> None:
    """All tags with how many memes carry them."""
    for name, count in Core(settings_of(ctx)).store.list_tags():
        print(f"{printable(name)}\t{count}")


def register(app: typer.Typer) -> None:
    app.add_typer(tag_app, name="tag")

    @app.command()
    @friendly_errors
    def describe(
        ctx: typer.Context,
        meme_id: int,
        text: Annotated[Optional[str], typer.Argument(help="Your description (empty string clears it).")] = None,
        generate: Annotated[bool, typer.Option("--generate", help="Generate a description with an image-to-text model.")] = False,
        model: Annotated[Optional[str], typer.Option("--model", help="Caption model id for --generate.")] = None,
    ) -> None:
        """Set your own description of a meme (searched, and wins ties), or --generate one."""
        if (text is None) == (not generate):
            raise InvalidInputError("give either the description text or --generate",
                                    hint='memesearch describe 12 "drake says no to X"  |  memesearch describe 12 --generate')
        core = Core(settings_of(ctx))
        core.require_writable("save descriptions")
        if generate:
            from memesearch.cli.library_cmds import load_caption_model

            core.store.get_meme(meme_id)  # a clear 'no meme with id' before loading any model
            report = core.pipeline.run_caption(load_caption_model(core, model), [meme_id])
            if report.failed:
                raise InvalidInputError(f"could not describe meme {meme_id}: {report.failed[0][1]}")
            meme = core.store.get_meme(meme_id)
            console.print(shown(meme.description), highlight=False)
        else:
            core.store.set_user_description(meme_id, text)
        core.pipeline.run_embed()
        console.print(f"meme {meme_id} described")

    @app.command("export")
    @friendly_errors
    def export_(ctx: typer.Context, file: Path) -> None:
        """Write descriptions, tags and OCR text of every meme, keyed by path, to a JSON file."""
        count = export_library(Core(settings_of(ctx)).store, file)
        console.print(f"exported {count} memes to {shown(file)}", highlight=False)

    @app.command("import")
    @friendly_errors
    def import_(ctx: typer.Context, file: Path) -> None:
        """Merge an export file; records for files not indexed yet wait until they are."""
        core = Core(settings_of(ctx))
        core.require_writable("import")
        result = import_library(core.store, file)
        core.pipeline.run_embed()
        console.print(f"applied {result['applied']} records; {result['pending']} wait for their files")
