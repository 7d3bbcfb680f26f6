"""One index run: scan every registered folder, then run each pending pipeline stage.

The CLI's `index`, the screenshots script and the tests all index through ``run_index``;
the CLI only adds progress bars (through ``progress``) and prints the summary."""

from __future__ import annotations

from collections.abc import Callable

from memesearch.app import Core
from memesearch.library.scanner import scan_folder

# (stage, done, total or None): the same callback Pipeline's stages take.
Progress = Callable[[str, int, int | None], None]


def _no_progress(stage: str, done: int, total: int | None) -> None:
    pass


def run_index(core: Core, *, progress: Progress | None = None, captioner=None) -> dict:
    """Scan every folder, then OCR, group templates, caption (when a captioner is given), embed
    texts and (when a visual search model is installed) pictures: whatever is pending. Returns a
    JSON-able summary. Incremental: finished work is kept, so an interrupted run resumes."""
    report = progress or _no_progress
    store = core.store
    summaries = []
    for folder in store.list_folders():
        counter = {"n": 0}

        def on_file(event: str, path: str, counter=counter) -> None:
            counter["n"] += 1
            report("scan", counter["n"], None)

        summaries.append(scan_folder(store, folder, core.settings, on_file).as_dict())
    ocr = core.pipeline.run_ocr(report)
    templates = core.pipeline.run_templates(report)
    caption = core.pipeline.run_caption(captioner, progress=report) if captioner else None
    embed = core.pipeline.run_embed(report)
    image_embed = core.pipeline.run_image_embed(core.visual, report)
    summary = {"folders": summaries, "ocr": ocr.as_dict(), "templates": templates.as_dict(),
               "embed": embed.as_dict(), "image_embed": image_embed, "counts": store.counts()}
    if caption is not None:
        summary["caption"] = caption.as_dict()
    return summary
