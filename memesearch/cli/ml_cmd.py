"""`memesearch ml serve`: the ML inference service."""

from __future__ import annotations

from typing import Annotated

import typer

from memesearch.cli.context import friendly_errors, settings_of


def register(app: typer.Typer) -> None:
    ml_app = typer.Typer(help="The ML inference service (OCR, descriptions, embeddings over HTTP).", no_args_is_help=True)

    @ml_app.command("serve")
    @friendly_errors
    def serve(
        ctx: typer.Context,
        host: Annotated[str, typer.Option("--host", help="Interface to bind; beyond loopback needs MEMESEARCH_ML_TOKEN.")] = "127.0.0.1",
        port: Annotated[int, typer.Option("--port", help="TCP port.")] = 8765,
    ) -> None:
        """Serve models over HTTP so the app (MEMESEARCH_ML_URLS) can run them elsewhere."""
        from memesearch.service.server import serve as run_server

        run_server(settings_of(ctx), host=host, port=port, log_level="warning")

    app.add_typer(ml_app, name="ml")
