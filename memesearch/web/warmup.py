"""Load the query embedder in the background when the server starts.

Without this the first search after `memesearch serve` pays for opening the
model (about a second). Startup is not blocked: a search that arrives while the
model is loading waits on the model's load lock (LazyModel) and then runs.
"""

from __future__ import annotations

import logging
import threading

log = logging.getLogger(__name__)


def start_warmup(core, ready: threading.Event) -> threading.Thread:
    """Open the search engine and its embedder in a daemon thread; ``ready`` is set when done (or failed)."""

    def warm() -> None:
        try:
            engine = core.search_engine
            engine.embedder.embed_queries(["warm up"])  # loads the model and runs it once
        except Exception as exc:  # noqa: BLE001 - a missing model must not stop the server; searches report it
            log.warning("could not preload the search model: %s", exc)
        finally:
            ready.set()

    thread = threading.Thread(target=warm, name="memesearch-warmup", daemon=True)
    thread.start()
    return thread
