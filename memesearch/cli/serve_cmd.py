"""`memesearch serve`: the web app plus an in-process worker, on loopback by default."""

from __future__ import annotations

import contextlib
import logging
from typing import Annotated

import typer

from memesearch.cli.context import console, friendly_errors, settings_of
from memesearch.errors import ConfigError
from memesearch.net import is_loopback

log = logging.getLogger(__name__)


def register(app: typer.Typer) -> None:
    @app.command()
    @friendly_errors
    def serve(
        ctx: typer.Context,
        host: Annotated[str, typer.Option(help="Address to bind; anything but loopback needs MEMESEARCH_PASSWORD.")] = "127.0.0.1",
        port: Annotated[int, typer.Option(min=1, max=65535)] = 8000,
        workers: Annotated[int, typer.Option(min=0, max=16, help="In-process job worker threads (0: run `memesearch worker` separately).")] = 1,
    ) -> None:
        """Run the web app (search, upload, folders, models) and a background worker."""
        import uvicorn

        from memesearch.app import Core
        from memesearch.web import create_app
        from memesearch.web.security import MIN_PASSWORD_CHARS, password_problem

        settings = settings_of(ctx)
        problem = None if is_loopback(host) else password_problem(settings.password)
        if problem:
            raise ConfigError(
                f"refusing to serve on {host}: {problem}, and anyone on the network could change your library",
                hint=f"set MEMESEARCH_PASSWORD to at least {MIN_PASSWORD_CHARS} characters (and MEMESEARCH_API_TOKEN "
                     "for scripts), or bind to 127.0.0.1",
            )
        core = Core(settings)
        web = create_app(core=core)
        from memesearch.web.warmup import start_warmup

        start_warmup(core, web.state.search_warm)
        worker = None
        if core.read_only:
            console.print(f"the data dir {settings.home} is read-only: serving search and pages; changes are refused",
                          highlight=False)
        elif workers:
            from memesearch.jobs.worker import start_in_process

            worker = start_in_process(core, concurrency=workers)
        console.print(f"memesearch on http://{host if ':' not in host else f'[{host}]'}:{port}  (data: {settings.home})",
                      highlight=False)

        def shut_down() -> None:
            if worker is not None:
                worker.stop()
            core.close()  # checkpoints the SQLite WAL: memesearch.db alone then holds every change

        @contextlib.asynccontextmanager
        async def lifespan(app):
            yield
            # After a graceful stop uvicorn re-raises SIGTERM, which ends the process before
            # `finally` below runs: close here, at the end of the app's life.
            shut_down()

        web.router.lifespan_context = lifespan
        try:
            # proxy_headers off: X-Forwarded-* are believed only from MEMESEARCH_TRUSTED_PROXIES
            # (web/proxies.py), not from uvicorn's default of 127.0.0.1.
            uvicorn.run(web, host=host, port=port, log_level="warning", access_log=False, proxy_headers=False)
        finally:
            shut_down()
