"""`memesearch caption IMAGE`: one-shot captioning, also the subprocess interface.

With ``--json`` it prints exactly one JSON object on stdout, so other programs
can run memesearch as a captioning subprocess.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Optional

import typer

from memesearch.cli.context import console, friendly_errors, settings_of


@friendly_errors
def caption(
    ctx: typer.Context,
    image: Annotated[Path, typer.Argument(help="Image file to describe.", exists=True, dir_okay=False)],
    model: Annotated[Optional[str], typer.Option("--model", help="Model id (default: the configured caption model).")] = None,
    backend: Annotated[
        Optional[str], typer.Option("--backend", help="Use only this backend: onnx, torch, api or fake.")
    ] = None,
    json_: Annotated[bool, typer.Option("--json", help="Print {model, backend, text, ms} as JSON.")] = False,
    prompt: Annotated[Optional[str], typer.Option("--prompt", help="Ask this instead of the model's prompt.")] = None,
    language: Annotated[
        Optional[str], typer.Option("--language", help="Output language (ISO code); models that cannot, refuse.")
    ] = None,
    max_new_tokens: Annotated[Optional[int], typer.Option("--max-new-tokens", help="Caption length limit in tokens.")] = None,
) -> None:
    """Describe one image with the caption model (first working backend, or --backend)."""
    from memesearch.library.decode import load_rgb
    from memesearch.ml.factory import load_captioner
    from memesearch.ml.readiness import listed_spec

    settings = settings_of(ctx)
    spec = listed_spec(model or settings.caption_model, settings).with_overrides(
        prompt=prompt, language=language, max_new_tokens=max_new_tokens
    )
    picture = load_rgb(image, settings.max_megapixels)
    captioner = load_captioner(spec, settings, backend=backend)
    result = captioner.caption_images([picture])[0]
    if json_:
        payload = {"model": spec.id, "backend": result.backend, "text": result.text, "ms": round(result.ms, 2)}
        typer.echo(json.dumps(payload, ensure_ascii=False))
    else:
        console.print(result.text, highlight=False)
        console.print(f"[dim]{spec.id} on {result.backend} ({result.dtype}), {result.ms:.0f} ms[/]")
