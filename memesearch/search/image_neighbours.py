"""Search by image, the visual model's half: the memes whose picture is nearest to a given one.

``image_neighbours`` embeds a decoded picture with the visual search model's image tower and
ranks the library's image vectors of that model's space by cosine. Search by image without a
model (perceptual hashes, template features) lives elsewhere and calls this when it is not None.
"""

from __future__ import annotations

from PIL import Image


def image_neighbours(core, image: Image.Image, limit: int) -> list[tuple[int, float]] | None:
    """(meme id, cosine) of the ``limit`` nearest memes by CLIP image vector, best first;
    None when no image-text model is installed (or visual search is turned off)."""
    visual = core.visual
    if visual is None:
        return None
    vector = visual.embed_images([image])[0]
    return core.search_engine.visual.images.search(vector, limit)
