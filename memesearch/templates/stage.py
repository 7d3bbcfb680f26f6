"""The template stage of ``index``: features for new or changed memes, then grouping.

Both halves are incremental and resumable. Features are stored per meme as soon as
they are computed (a stage status like OCR's, so a failure is recorded and a changed
file is redone). Grouping then looks only at memes not grouped yet, against
everything already grouped, and saves its result in one transaction: an interrupted
grouping pass leaves those memes ungrouped, and the next run does them again.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from memesearch.errors import ImageError
from memesearch.library.decode import load_rgb, one_line_reason
from memesearch.library.scanner import mark_unreadable
from memesearch.store.templates import STAGE, TemplateStore
from memesearch.templates.features import extract, single_threaded_opencv
from memesearch.templates.grouping import UnionFind, VectorIndex, find_partners

if TYPE_CHECKING:
    from memesearch.store.base import Store

log = logging.getLogger(__name__)

Progress = Callable[[str, int, int], None]
#: Memes whose features are loaded at once while grouping (about 10 KB each).
GROUPING_BATCH = 1000
#: Threads verifying candidates while grouping many memes (a from-scratch regroup of a library).
GROUPING_WORKERS = min(4, os.cpu_count() or 1)


def extract_one(store: Store, meme, max_megapixels: float) -> None:
    """Compute and store one meme's template features (raises on an unreadable file)."""
    templates = TemplateStore(store)
    image = load_rgb(Path(meme.path), max_megapixels)
    with single_threaded_opencv():
        features = extract(image, templates.ocr_boxes(meme.id))
    templates.put_features(meme.id, features)


def run_features(store: Store, max_megapixels: float, progress: Progress | None = None) -> tuple[int, list[tuple[int, str]]]:
    """Features for every pending meme; one unreadable file is recorded and skipped. (done, failed)."""
    pending = TemplateStore(store).pending()
    done, failed = 0, []
    for position, meme_id in enumerate(pending, start=1):
        meme = store.get_meme(meme_id)
        try:
            extract_one(store, meme, max_megapixels)
            done += 1
        except (ImageError, OSError) as exc:  # the file: an error row, not retried until it changes
            message = getattr(exc, "message", None) or f"cannot read: {getattr(exc, 'strerror', None) or exc}"
            mark_unreadable(store, meme, message)
            failed.append((meme_id, message))
        except Exception as exc:  # noqa: BLE001 - one bad file never stops the run: record it and go on
            message = f"template features failed: {one_line_reason(exc)}"
            store.mark_stage(meme_id, STAGE, "failed", message)
            failed.append((meme_id, message))
            log.warning("template features failed for %s: %s", meme.path, message)
        if progress:
            progress(STAGE, position, len(pending))
    return done, failed


def run_grouping(store: Store, progress: Progress | None = None) -> int:
    """Group every meme not grouped yet; returns how many memes were looked at."""
    templates = TemplateStore(store)
    new = templates.ungrouped()
    if not new:
        return 0
    ids, matrix = templates.vectors()
    index = VectorIndex.from_matrix(ids, matrix)
    components = UnionFind()
    for meme_id, group_id in templates.group_ids().items():
        components.union(-group_id, meme_id)  # groups as negative nodes: members start connected
    for start in range(0, len(new), GROUPING_BATCH):
        batch = templates.features_of(new[start : start + GROUPING_BATCH])
        with single_threaded_opencv():
            find_partners(list(batch.items()), index, templates.features_of, components, workers=GROUPING_WORKERS)
        if progress:
            progress("grouping", min(start + GROUPING_BATCH, len(new)), len(new))
    # Only components a new meme is in can have changed (merges happen through new memes).
    fresh = set(new)
    changed = [c for c in components.sets(min_size=2, members=set(ids.tolist())) if c & fresh]
    templates.save_grouping(new, changed)
    return len(new)
