"""What people write: tags, descriptions, export and import."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Optional

import typer

from memesearch.app import Core
from memesearch.cli.context import console, friendly_errors, settings_of
from memesearch.cli.output import printable, shown
from memesearch.errors import InvalidInputError, NotFoundError
from memesearch.library.removal import remove_memes
from memesearch.library.tag_colors import TAG_COLORS
from memesearch.store.transfer import export_library, import_library

tag_app = typer.Typer(help="Create, assign, remove, list, rename, merge, colour and delete tags.", no_args_is_help=True)


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


@tag_app.command("rename")
@friendly_errors
def tag_rename(ctx: typer.Context, old: str, new: str) -> None:
    """Rename a tag; renaming onto an existing tag merges the two."""
    core = Core(settings_of(ctx))
    outcome = core.store.rename_tag(old, new)  # the search index follows; `index` refreshes the vectors
    message = {"renamed": f"renamed #{shown(old)} to #{shown(new.strip())}",
               "merged": f"merged #{shown(old)} into #{shown(new.strip())}"}
    console.print(message.get(outcome, "nothing to change"), highlight=False)


@tag_app.command("delete")
@friendly_errors
def tag_delete(ctx: typer.Context, name: str) -> None:
    """Delete a tag from every meme."""
    core = Core(settings_of(ctx))
    memes = core.store.delete_tag(name)
    console.print(f"deleted #{shown(name.strip())} from {memes} meme{'s' if memes != 1 else ''}", highlight=False)


@tag_app.command("color")
@friendly_errors
def tag_color(ctx: typer.Context, name: str,
              color: Annotated[str, typer.Argument(help=f"One of: {', '.join(TAG_COLORS)}, or 'none'.")]) -> None:
    """Give a tag a colour (shown on its chips in the web app)."""
    Core(settings_of(ctx)).store.set_tag_color(name, None if color.strip().lower() == "none" else color)


@tag_app.command("clean")
@friendly_errors
def tag_clean(ctx: typer.Context) -> None:
    """Delete every tag that no meme carries."""
    deleted = Core(settings_of(ctx)).store.delete_unused_tags()
    console.print(f"deleted {len(deleted)} unused tag{'s' if len(deleted) != 1 else ''}"
                  + (f": {shown(', '.join(deleted))}" if deleted else ""), highlight=False)


def register(app: typer.Typer) -> None:
    app.add_typer(tag_app, name="tag")

    @app.command("tags")
    @friendly_errors
    def tags(ctx: typer.Context, json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False) -> None:
        """Every tag with its meme count and colour (unused tags too: `memesearch tag clean` deletes them)."""
        found = Core(settings_of(ctx)).store.list_tag_details()
        if json_:
            print(json.dumps({"tags": [asdict(t) for t in found]}, ensure_ascii=False))
            return
        for tag in found:
            print(f"{printable(tag.name)}\t{tag.count}\t{tag.color or ''}".rstrip("\t"))

    @app.command("remove-meme")
    @friendly_errors
    def remove_meme(
        ctx: typer.Context,
        meme_ids: Annotated[list[int], typer.Argument(help="Ids of the memes to remove (see `memesearch search`).")],
        json_: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Remove memes from the library. Your files stay on disk (rescans skip them); files the app
        saved itself (web uploads) are deleted."""
        core = Core(settings_of(ctx))
        core.require_writable("remove memes")
        report = remove_memes(core.store, core.settings, meme_ids)
        if json_:
            print(json.dumps(report.as_dict(), ensure_ascii=False))
        else:
            console.print(f"removed {len(report.removed)} meme{'s' if len(report.removed) != 1 else ''}; "
                          f"{len(report.files_deleted)} uploaded file(s) deleted, {len(report.excluded)} file(s) left "
                          "on disk and skipped by rescans", highlight=False)
            for problem in report.errors:
                console.print(f"could not delete {shown(problem['path'])}: {shown(problem['error'])}", highlight=False)
        if report.not_found:
            raise NotFoundError(f"no meme with id {', '.join(map(str, report.not_found))}",
                                hint="memesearch search --json lists memes with their ids")

    @app.command("restore-meme")
    @friendly_errors
    def restore_meme(ctx: typer.Context, paths: Annotated[list[Path], typer.Argument(help="Files removed earlier.")]) -> None:
        """Let the next scan index files that were removed from the library again."""
        core = Core(settings_of(ctx))
        core.require_writable("restore memes")
        wanted = [str(p.expanduser().absolute()) for p in paths]
        count = core.store.include_paths(wanted)
        if not count:
            raise NotFoundError("none of these paths was removed from the library",
                                hint="give the full path, as `memesearch show ID` printed it")
        console.print(f"{count} file(s) will be indexed by the next `memesearch index`", highlight=False)

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
