"""The "image embed" stage of ``index``: one image vector per present meme, per model space.

Incremental: a meme needs a vector when its space holds none with the meme's current sha256
(new memes, changed files, a newly chosen model). Resumable: vectors are saved every
``SAVE_EVERY`` memes, so an interrupted run loses at most that many. One file that does not
decode becomes that file's error row; one image the model refuses is marked failed for this
stage; the batch goes on. A model that cannot run at all stops the stage, not ``index``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

from memesearch.errors import ImageError, ModelUnavailableError, NotFoundError
from memesearch.library.decode import load_rgb, one_line_reason
from memesearch.library.scanner import mark_unreadable
from memesearch.visual.model import STAGE, VisualModel

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
#: Memes decoded and embedded one at a time (one decoded image in memory), saved together.
SAVE_EVERY = 16


def pending(store, space: str) -> list[int]:
    """Present memes with no vector in ``space`` for their current bytes."""
    stored = store.vector_hashes(space)
    rows = store.query("SELECT id, sha256 FROM memes WHERE status = 'ok' ORDER BY id")
    return [row["id"] for row in rows if row["sha256"] and stored.get(row["id"]) != row["sha256"]]


def embed_meme(store, visual: VisualModel, meme, max_megapixels: float):
    """(id, sha256, vector) of one meme; raises ImageError/OSError for its file, the model's errors for the rest."""
    image = load_rgb(Path(meme.path), max_megapixels)
    return meme.id, meme.sha256, visual.embed_images([image])[0]


def run_image_embed(store, visual: VisualModel | None, max_megapixels: float,
                    progress: Progress | None = None) -> dict:
    """Image vectors for every pending meme. Returns the stage report (done, skipped, failed, error)."""
    report = {"stage": STAGE, "model": visual.model_id if visual else None, "done": 0, "skipped": 0,
              "failed": [], "error": None}
    if visual is None:
        return report
    todo = pending(store, visual.space)
    batch: list = []
    by_bytes: dict[str, object] = {}  # sha256 -> vector made in this run: duplicates are not embedded twice
    started = time.perf_counter()
    for position, meme_id in enumerate(todo, start=1):
        try:
            meme = store.get_meme(meme_id)
        except NotFoundError:  # removed while this stage ran
            continue
        try:
            if meme.status != "ok":
                continue  # went missing meanwhile
            if meme.sha256 in by_bytes:
                batch.append((meme.id, meme.sha256, by_bytes[meme.sha256]))
                report["skipped"] += 1
            else:
                batch.append(embed_meme(store, visual, meme, max_megapixels))
                by_bytes[meme.sha256] = batch[-1][2]
                report["done"] += 1
        except (ImageError, OSError) as exc:  # the file: an error row, not retried until it changes
            message = getattr(exc, "message", None) or f"cannot read: {getattr(exc, 'strerror', None) or exc}"
            mark_unreadable(store, meme, message)
            report["failed"].append({"id": meme_id, "error": message})
        except ModelUnavailableError as exc:  # no backend runs: every other meme would fail the same way
            report["error"] = getattr(exc, "message", None) or str(exc)
            log.warning("image embeddings stopped: %s", report["error"])
            break
        except Exception as exc:  # noqa: BLE001 - one image the model chokes on must not stop the run
            message = f"image embedding failed: {one_line_reason(exc)}"
            store.mark_stage(meme_id, STAGE, "failed", message)
            report["failed"].append({"id": meme_id, "error": message})
            log.warning("image embedding failed for %s: %s", meme.path, message)
        if len(batch) >= SAVE_EVERY:
            _save(store, visual, batch)
        if progress:
            progress(STAGE, position, len(todo))
    _save(store, visual, batch)
    report["seconds"] = round(time.perf_counter() - started, 3)
    return report


def _save(store, visual: VisualModel, batch: list) -> None:
    if batch:
        store.put_vectors(visual.space, list(batch), stage=STAGE)
        batch.clear()
