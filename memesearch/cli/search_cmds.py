"""Finding memes: search (single, --json, --batch) and show."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from memesearch.app import Core
from memesearch.cli.context import console, friendly_errors, settings_of
from memesearch.cli.output import printable, shown
from memesearch.errors import ImageError, InvalidInputError
from memesearch.search.engine import MAX_LIMIT, MAX_OFFSET, MODES, SearchResult
from memesearch.store.templates import TemplateStore
from memesearch.unicode_input import decode_utf8


def _print_result(result: SearchResult) -> None:
    if not result.hits:
        from memesearch.search.suggest import suggestions

        if result.mode == "image":
            console.print(f"no memes look like {shown(result.query)}: no copy of it and no meme of its template",
                          highlight=False)
            return
        console.print(f"no memes match {shown(repr(result.query))} in {result.mode} mode", highlight=False)
        for tip in suggestions(result.query, result.mode)[:3]:
            console.print(f"  try: memesearch search {printable(repr(tip.query))} --mode {tip.mode}", highlight=False,
                          markup=False)
        return
    table = Table(show_lines=False)
    kinds = getattr(result, "kinds", None)  # search by image says why each hit matched
    for column in ("#", "id", "score", *(["match"] if kinds else []), "path", "text"):
        table.add_column(column, overflow="fold")
    for rank, hit in enumerate(result.hits, start=1):
        text = hit.user_description or hit.description or hit.ocr_text
        table.add_row(str(rank), str(hit.id), f"{hit.score:.4f}", *([kinds.get(hit.id, "")] if kinds else []),
                      shown(hit.path), shown(" ".join(text.split())[:80]))
    console.print(table)
    total = f"{result.total}" if result.total_is_exact else f"about {result.total}"
    console.print(f"{len(result.hits)} of {total} hits in {result.ms:.1f} ms ({result.mode})", style="dim")


def _search_image(core: Core, path: Path, limit: int, offset: int) -> SearchResult:
    """Search by the picture in ``path``; an unreadable or oversized file is one clear error."""
    from memesearch.search.by_image import search_by_image

    hint = "give the path of a JPEG, PNG, WebP, GIF or BMP image"
    try:
        if path.stat().st_size > core.settings.max_upload_mb * 1e6:
            raise InvalidInputError(f"{path} is {path.stat().st_size / 1e6:.1f} MB, over the "
                                    f"{core.settings.max_upload_mb:g} MB limit for a search image",
                                    hint="search with a smaller screenshot of the meme")
        data = path.read_bytes()
    except OSError as exc:
        raise InvalidInputError(f"cannot read {path}: {exc.strerror or exc}", hint=hint) from exc
    try:
        return search_by_image(core, data, name=str(path), limit=limit, offset=offset)
    except ImageError as exc:
        raise ImageError(exc.message, hint=hint) from exc


def register(app: typer.Typer) -> None:
    @app.command()
    @friendly_errors
    def search(
        ctx: typer.Context,
        query: Annotated[Optional[str], typer.Argument(help='Words, "phrases", tag:NAME, folder:NAME, format:EXT, is:described, template:GROUP, same:MEME.')] = None,
        mode: Annotated[str, typer.Option(help=f"One of {', '.join(MODES)}.")] = "hybrid",
        limit: Annotated[int, typer.Option(min=1, max=MAX_LIMIT)] = 10,
        offset: Annotated[int, typer.Option(min=0, max=MAX_OFFSET, help="Skip this many hits (paging).")] = 0,
        json_: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
        batch: Annotated[Optional[Path], typer.Option(help="File with one query per line; prints JSON lines.")] = None,
        siblings: Annotated[bool, typer.Option("--siblings", help="Follow each hit with its template siblings.")] = False,
        image: Annotated[Optional[Path], typer.Option("--image", help="Find memes by picture: the meme a screenshot "
                                                      "came from first, then memes of the same template.")] = None,
    ) -> None:
        """Search memes (hybrid keyword + meaning by default), or by picture with --image FILE."""
        if sum(given is not None for given in (query, batch, image)) != 1:
            raise InvalidInputError("give either a QUERY, --batch FILE or --image FILE")
        if image is not None:
            result = _search_image(Core(settings_of(ctx)), image, limit, offset)
            if json_:
                print(json.dumps(result.as_dict(), ensure_ascii=False))
            else:
                _print_result(result)
            return
        engine = Core(settings_of(ctx)).search_engine
        if batch is not None:
            try:
                data = batch.read_bytes()
            except OSError as exc:
                raise InvalidInputError(f"cannot read {batch}: {exc.strerror or exc}") from exc
            lines = decode_utf8(data, f"the batch file {batch}").splitlines()
            for line in lines:
                if line.strip():
                    result = engine.search(line.strip(), mode=mode, limit=limit, offset=offset, siblings=siblings)
                    sys.stdout.write(json.dumps(result.as_dict(), ensure_ascii=False) + "\n")
            return
        result = engine.search(query, mode=mode, limit=limit, offset=offset, siblings=siblings)
        if json_:
            print(json.dumps(result.as_dict(), ensure_ascii=False))
        else:
            _print_result(result)

    @app.command()
    @friendly_errors
    def show(ctx: typer.Context, meme_id: Annotated[int, typer.Argument(help="Meme id.")],
             json_: Annotated[bool, typer.Option("--json")] = False) -> None:
        """Everything known about one meme."""
        core = Core(settings_of(ctx))
        meme = core.store.get_meme(meme_id)
        data = {
            "id": meme.id, "path": meme.path, "status": meme.status, "error": meme.error, "sha256": meme.sha256,
            "phash": meme.phash, "format": meme.format, "width": meme.width, "height": meme.height,
            "frames": meme.frames, "size": meme.size, "duplicate_of": meme.duplicate_of, "ocr_text": meme.ocr_text,
            "ocr_engine": meme.ocr_engine, "user_description": meme.user_description, "tags": meme.tags,
            "descriptions": [d.__dict__ for d in meme.descriptions],
            "template_group": TemplateStore(core.store).group_of(meme.id),
        }
        if json_:
            print(json.dumps(data, ensure_ascii=False))
            return
        for key, value in data.items():
            console.print(f"[bold]{key}[/]: {shown(value)}", highlight=False)
