"""Starting the service: refuse to listen beyond loopback without a token."""

from __future__ import annotations


from memesearch.config import Settings
from memesearch.errors import ConfigError
from memesearch.net import is_loopback


def check_bind(host: str, settings: Settings) -> None:
    if not is_loopback(host) and not settings.ml_token:
        raise ConfigError(
            f"refusing to serve models on {host} without a token: anyone on the network could use them",
            hint="set MEMESEARCH_ML_TOKEN to a long random secret (same value in the app), or bind 127.0.0.1",
        )


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8765, log_level: str = "info") -> None:
    check_bind(host, settings)
    import uvicorn

    from memesearch.service.app import create_app

    uvicorn.run(create_app(settings), host=host, port=port, log_level=log_level, access_log=False)
