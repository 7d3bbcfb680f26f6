"""Folders and indexing: add, remove, folders, index, prune, status."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from memesearch.app import Core
from memesearch.cli.context import console, err_console, friendly_errors, settings_of
from memesearch.cli.output import shown
from memesearch.cli.progress import stage_bars
from memesearch.errors import InvalidInputError, NotFoundError
from memesearch.library.folders import scan_problems, validate_folder
from memesearch.library.indexing import run_index
from memesearch.library.prune import prune as prune_gone
from memesearch.visual.model import visual_status


def load_caption_model(core: Core, model: str | None, *, yes: bool = False):
    """The caption chain for ``model`` (default: the configured one), loaded now so a missing
    model fails before any work starts, with the fix in the message. A model that is not
    downloaded is offered for download first (see ``model_prompt``)."""
    from memesearch.cli.model_prompt import ensure_model
    from memesearch.ml.factory import load_captioner

    spec = ensure_model(core.settings, model or core.settings.caption_model, yes=yes)
    return load_captioner(spec, core.settings)


def _print_index_summary(summary: dict) -> None:
    for folder in summary["folders"]:
        line = (f"{shown(folder['folder'])}: {folder['seen']} files, {folder['added']} new, {folder['changed']} changed, "
                f"{folder['moved']} moved, {folder['missing']} missing, {folder['unchanged']} unchanged")
        console.print(line, highlight=False)
        if folder["folder_error"]:
            err_console.print(f"  [red]{shown(folder['folder_error'])}[/]", highlight=False)
        problems = [(e["path"], e["error"]) for e in folder["errors"]] + [(s["path"], s["reason"]) for s in folder["skipped"]]
        for path, why in problems[:20]:
            err_console.print(f"  [yellow]skipped[/] {shown(path)}: {shown(why)}", highlight=False)
        if len(problems) > 20:
            err_console.print(f"  ... and {len(problems) - 20} more (see `memesearch status --errors`)")
    ocr, embed = summary["ocr"], summary["embed"]
    console.print(f"OCR: {ocr['done']} read, {len(ocr['failed'])} failed; embeddings: {embed['done']} computed, "
                  f"{embed['skipped']} unchanged")
    image = summary.get("image_embed") or {}
    if image.get("model"):
        console.print(f"image embeddings ({image['model']}): {image['done']} computed, {len(image['failed'])} failed",
                      highlight=False)
        if image.get("error"):
            err_console.print(f"  [yellow]visual search model unavailable[/]: {shown(image['error'])}", highlight=False)
    if "caption" in summary:
        caption = summary["caption"]
        console.print(f"descriptions: {caption['done']} generated, {len(caption['failed'])} failed")
        for failure in caption["failed"][:10]:
            err_console.print(f"  [yellow]meme {failure['id']}[/]: {shown(failure['error'])}", highlight=False)


def register(app: typer.Typer) -> None:
    @app.command()
    @friendly_errors
    def add(ctx: typer.Context, folders: Annotated[list[Path], typer.Argument(help="Folders of memes to index.")]) -> None:
        """Register meme folders (they are only ever read)."""
        core = Core(settings_of(ctx))
        for folder in folders:
            resolved = validate_folder(folder, core.settings.home)
            core.store.add_folder(str(resolved))
            console.print(f"added {shown(resolved)}", highlight=False)
        console.print("run `memesearch index` to scan them")

    @app.command()
    @friendly_errors
    def remove(ctx: typer.Context, folder: Annotated[Path, typer.Argument(help="A registered folder.")]) -> None:
        """Unregister a folder; its memes leave the library but keep their texts and tags (adding the folder again brings them back)."""
        core = Core(settings_of(ctx))
        found = core.store.folder_by_path(str(folder.expanduser().resolve()))
        if found is None:
            raise NotFoundError(f"folder is not registered: {folder}")
        core.store.remove_folder(found.id)
        console.print(f"removed {shown(found.path)}", highlight=False)

    @app.command()
    @friendly_errors
    def folders(ctx: typer.Context, json_: Annotated[bool, typer.Option("--json")] = False) -> None:
        """List registered folders with their last scan."""
        core = Core(settings_of(ctx))
        listed = core.store.list_folders()
        if json_:
            print(json.dumps([{"path": f.path, "last_scan_at": f.last_scan_at, "last_scan": f.last_scan} for f in listed]))
            return
        for folder in listed:
            console.print(shown(folder.path), highlight=False)

    @app.command()
    @friendly_errors
    def index(
        ctx: typer.Context,
        json_: Annotated[bool, typer.Option("--json", help="Print a JSON summary instead of text.")] = False,
        describe: Annotated[bool, typer.Option("--describe", help="Also generate descriptions with an image-to-text model.")] = False,
        model: Annotated[Optional[str], typer.Option("--model", help="Caption model id for --describe.")] = None,
        yes: Annotated[bool, typer.Option("--yes", "-y", help="Download a missing caption model without asking.")] = False,
    ) -> None:
        """Scan registered folders, read text (OCR), describe (--describe) and embed. Incremental and resumable."""
        core = Core(settings_of(ctx))
        core.require_writable("index")
        if not core.store.list_folders():
            raise InvalidInputError("no folders registered", hint="memesearch add FOLDER")
        captioner = load_caption_model(core, model, yes=yes) if describe else None
        try:
            with stage_bars(not json_) as bars:
                summary = run_index(core, progress=bars.update, captioner=captioner)
        except KeyboardInterrupt:
            err_console.print("\ninterrupted: everything finished so far is saved; run `memesearch index` again to resume")
            raise typer.Exit(130) from None
        if json_:
            print(json.dumps(summary, ensure_ascii=False))
        else:
            _print_index_summary(summary)

    @app.command()
    @friendly_errors
    def prune(ctx: typer.Context) -> None:
        """Forget memes whose files are gone (their texts and tags go too)."""
        core = Core(settings_of(ctx))
        core.require_writable("prune the library")  # refused even when there is nothing to forget
        result = prune_gone(core.store, core.settings.home)
        console.print(f"pruned {result.pruned} memes whose files are gone")
        if result.kept:
            console.print(f"kept {result.kept} memes outside the library whose files still exist "
                          "(adding their folder again brings them back)")

    @app.command()
    @friendly_errors
    def status(
        ctx: typer.Context,
        json_: Annotated[bool, typer.Option("--json")] = False,
        errors: Annotated[bool, typer.Option("--errors", help="List files that could not be indexed.")] = False,
    ) -> None:
        """Counts of memes, texts, vectors and errors."""
        core = Core(settings_of(ctx))
        counts = core.store.counts()
        data = {"data_dir": str(core.settings.home), "store": core.store.kind, "schema_version": core.store.schema_version,
                "embed_model": core.settings.embed_model, "counts": counts}
        visual = visual_status(core.settings, core.store, core.visual)
        data["visual_model"], data["image_vectors"] = visual.model_id, visual.image_vectors
        if errors:
            data["errors"] = [{"path": p, "error": e} for p, e in core.store.errors(limit=1000)] + scan_problems(core.store)
        if json_:
            print(json.dumps(data, ensure_ascii=False))
            return
        table = Table(title=f"memesearch — {shown(core.settings.home)}", show_header=False)
        for key, value in counts.items():
            table.add_row(key, str(value))
        table.add_row("visual search", visual.line)
        console.print(table)
        for item in data.get("errors", []):
            console.print(f"[yellow]{shown(item['path'])}[/]: {shown(item['error'])}", highlight=False)
