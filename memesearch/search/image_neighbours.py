"""CLIP image neighbours of a query picture (placeholder on this branch).

The image-model stage fills this in: with an image–text embedding model installed it
returns the memes whose stored image vectors are nearest to ``image`` as
``[(meme_id, cosine), ...]`` best first. Here no image model exists yet, so it always
answers None ("no image model installed") and search by image uses perceptual hashes
and template features only.
"""

from __future__ import annotations

from PIL import Image


def image_neighbours(core, image: Image.Image, limit: int) -> list[tuple[int, float]] | None:
    """The ``limit`` nearest memes by CLIP image vector, or None when no image model is installed."""
    return None
