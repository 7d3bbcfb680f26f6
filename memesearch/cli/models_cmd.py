"""`memesearch models list|pull|check`: what is installed, fetching files, self-test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from memesearch.cli.context import console, err_console, friendly_errors, settings_of

models_app = typer.Typer(help="List, download and check image-to-text models.", no_args_is_help=True)


def _megabytes(size: int) -> str:
    return f"{size / 1e6:,.0f} MB" if size >= 1e6 else f"{size / 1e3:,.0f} kB"


@models_app.command("list")
@friendly_errors
def list_models(
    ctx: typer.Context,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Known models, whether their files are downloaded and which backend would run."""
    from memesearch.ml import readiness
    from memesearch.ml.download import status
    from memesearch.ml.readiness import listed_specs

    settings = settings_of(ctx)
    rows = []
    for spec in listed_specs(settings):
        files = status(spec, settings.models_dir)
        if spec.sources.onnx is None:
            present = "-"
        elif files.unknown_reason:
            present = "?"
        else:
            total = len(files.present) + len(files.missing)
            present = f"{len(files.present)}/{total}" + (f" ({_megabytes(files.total_bytes)})" if files.present else "")
        backend = readiness.check(spec, settings).backend
        rows.append(
            {
                "id": spec.id,
                "family": spec.family,
                "size": spec.size,
                "files": present,
                "backend": backend,
                "decoder": files.decoder,
                "default": spec.id == settings.caption_model,
                "description": spec.description,
            }
        )
    if json_:
        typer.echo(json.dumps({"models": rows}, indent=2))
        return
    table = Table(title=f"Models (files in {settings.models_dir})")
    for column in ("", "id", "family", "size", "files", "would run on"):
        table.add_column(column)
    for row in rows:
        table.add_row("*" if row["default"] else "", row["id"], row["family"], row["size"], row["files"], row["backend"])
    console.print(table)
    for row in rows:
        if row["decoder"]:
            console.print(f"{row['id']} {row['decoder']}", highlight=False)
    console.print("* = default (MEMESEARCH_CAPTION_MODEL). Download files with `memesearch models pull ID`.")


@models_app.command("pull")
@friendly_errors
def pull_model(
    ctx: typer.Context,
    model_id: Annotated[str, typer.Argument(metavar="ID", help="Model id (see `memesearch models list`).")],
    dtype: Annotated[Optional[str], typer.Option("--dtype", help="ONNX precision, e.g. fp32, int8, q4.")] = None,
    from_dir: Annotated[
        Optional[Path],
        typer.Option("--from", help="Install files you downloaded by hand from this folder instead of the hub."),
    ] = None,
) -> None:
    """Download a model's ONNX files (only those the runtime needs) at the pinned revision.

    Shows bytes, speed and time left; an interrupted pull resumes where it stopped."""
    from memesearch.ml.download import pull
    from memesearch.ml.readiness import listed_spec

    settings = settings_of(ctx)
    spec = listed_spec(model_id, settings)
    result = pull(spec, settings.models_dir, dtype, from_dir=from_dir, console=err_console)
    console.print(
        f"{spec.id} ({result.dtype}): {len(result.present)} file(s), {_megabytes(result.total_bytes)} in {result.directory}"
    )
    if result.decoder:
        console.print(f"{spec.id} {result.decoder}", highlight=False)


@models_app.command("check")
@friendly_errors
def check_models(
    ctx: typer.Context,
    tiny: Annotated[
        bool, typer.Option("--tiny", help="Build tiny random models, export them and compare ONNX with PyTorch (offline).")
    ] = False,
    family: Annotated[
        Optional[list[str]], typer.Option("--family", help="With --tiny: only these families (repeatable).")
    ] = None,
    tokens: Annotated[int, typer.Option("--tokens", min=1, help="Tokens generated and compared per image.")] = 16,
    json_: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """For every model and backend: available, loads, ONNX/PyTorch parity (tokens; cosine for clip), ms per image."""
    from memesearch.ml.check import ALL_FAMILIES, as_json, check_installed, check_tiny

    settings = settings_of(ctx)
    if tiny:
        unknown = set(family or []) - set(ALL_FAMILIES)
        if unknown:
            raise typer.BadParameter(f"unknown family {sorted(unknown)}; choose from {', '.join(ALL_FAMILIES)}")
        rows = check_tiny(tuple(family) if family else ALL_FAMILIES, tokens=tokens)
    else:
        rows = check_installed(settings, tokens=tokens)
    if json_:
        typer.echo(json.dumps(as_json(rows), indent=2))
    else:
        table = Table(title="models check" + (" --tiny" if tiny else ""))
        for column in ("model", "backend", "dtype", "avail", "loads", "parity", "tokens", "min cos", "ms"):
            table.add_column(column, no_wrap=True)
        table.add_column("error", overflow="fold", ratio=1)
        for row in rows:
            parity = "-" if row.parity is None else ("yes" if row.parity else "NO")
            ms = "-" if row.ms_per_image is None else f"{row.ms_per_image:.0f}"
            error = (row.error or "").split("\n")[0]
            cosine = "-" if row.min_cosine is None else f"{row.min_cosine:.6f}"
            table.add_row(row.model, row.backend, row.dtype, _yes(row.available), _yes(row.loads), parity,
                          str(row.tokens_compared), cosine, ms, error[:160] + ("..." if len(error) > 160 else ""))
        console.print(table)
        console.print("--json prints every error in full.")
    if any(row.failed for row in rows):
        raise typer.Exit(1)


def _yes(value: bool) -> str:
    return "yes" if value else "no"


@models_app.command("export")
@friendly_errors
def export_model(
    ctx: typer.Context,
    model_id: Annotated[str, typer.Argument(help="Model id whose family's layout to write (e.g. smolvlm-256m).")],
    from_dir: Annotated[Path, typer.Option("--from", help="A transformers checkpoint folder.", exists=True, file_okay=False)],
    out: Annotated[Path, typer.Option("--out", help="Output folder for the ONNX files.")],
    int8: Annotated[bool, typer.Option("--int8", help="Also write dynamically quantised int8 copies.")] = False,
) -> None:
    """Export a transformers checkpoint to the community ONNX layout our runtime reads (needs the [export] extra)."""
    from memesearch.errors import InvalidInputError
    from memesearch.ml.families import family_module
    from memesearch.ml.registry import get_spec

    settings = settings_of(ctx)
    spec = get_spec(model_id, settings.home)
    if spec.family not in ("smolvlm", "florence2", "moondream", "clip"):
        raise InvalidInputError(f"{model_id} ({spec.family}) has no ONNX export")
    exporter = family_module("export", spec.family)
    with console.status(f"exporting {from_dir} as {spec.family} ..."):
        # SmolVLM's int8 decoder as models.yml asks (per row: exact batches in bulk describe).
        per_model = {"int8_decoder": spec.sources.onnx.int8_decoder} if spec.family == "smolvlm" and spec.sources.onnx else {}
        written = exporter.export(from_dir, out, int8=int8, **per_model)
    console.print(f"wrote {written}", highlight=False)
    console.print(f"install it with: memesearch models pull {model_id} --from {out}", highlight=False)
