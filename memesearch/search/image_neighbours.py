"""Search by image, the visual model's half: the memes whose picture is nearest to a given one.

``image_neighbours`` embeds a decoded picture with the visual search model's image tower and
ranks the library's image vectors of that model's space by cosine. Search by image without a
model (perceptual hashes, template features) lives elsewhere and calls this when it is not None.
"""

from __future__ import annotations

import logging

from PIL import Image

from memesearch.errors import ModelUnavailableError

log = logging.getLogger(__name__)


def image_neighbours(core, image: Image.Image, limit: int) -> list[tuple[int, float]] | None:
    """(meme id, cosine) of the ``limit`` nearest memes by CLIP image vector, best first;
    None when no image-text model is installed, visual search is turned off, or the model
    cannot run (then search by image works as without it)."""
    visual = core.visual
    if visual is None:
        return None
    try:
        vector = visual.embed_images([image])[0]
    except ModelUnavailableError as exc:
        log.warning("search by image without the visual model: %s", getattr(exc, "message", exc))
        return None
    return core.search_engine.visual.images.search(vector, limit)
