"""SmolVLM (Idefics3) image preprocessing in numpy + Pillow.

A line-by-line port of transformers' ``Idefics3ImageProcessorPil`` (the PIL backend, which is
what transformers picks for this Lanczos processor): the longest edge is resized to
``size.longest_edge``, the image is resized again to whole multiples of the tile size and cut
into tiles (row-major) followed by one global image squeezed to a single tile. Every resize
is a Pillow Lanczos resize of the uint8 image, as in transformers, so the pixels match.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

# transformers' MAX_IMAGE_SIZE for Idefics3: an absolute cap on the first resize.
MAX_IMAGE_SIZE = 4096


@dataclass(frozen=True)
class ImageSettings:
    """The fields of an Idefics3 ``preprocessor_config.json`` that change the pixels."""

    longest_edge: int | None = 2048
    tile_size: int = 512
    do_resize: bool = True
    do_image_splitting: bool = True
    do_rescale: bool = True
    rescale_factor: float = 1 / 255
    do_normalize: bool = True
    image_mean: tuple[float, ...] = field(default=(0.5, 0.5, 0.5))
    image_std: tuple[float, ...] = field(default=(0.5, 0.5, 0.5))
    resample: int = Image.Resampling.LANCZOS

    @classmethod
    def from_config(cls, config: dict) -> ImageSettings:
        defaults = cls()
        size = config.get("size") or {}
        max_size = config.get("max_image_size") or {}
        return cls(
            longest_edge=size.get("longest_edge", defaults.longest_edge),
            tile_size=int(max_size.get("longest_edge", defaults.tile_size)),
            do_resize=bool(config.get("do_resize", True)),
            do_image_splitting=bool(config.get("do_image_splitting", True)),
            do_rescale=bool(config.get("do_rescale", True)),
            rescale_factor=float(config.get("rescale_factor", defaults.rescale_factor)),
            do_normalize=bool(config.get("do_normalize", True)),
            image_mean=tuple(config.get("image_mean", defaults.image_mean)),
            image_std=tuple(config.get("image_std", defaults.image_std)),
            resample=int(config.get("resample", defaults.resample)),
        )


@dataclass
class PreprocessedImage:
    #: (tiles, 3, tile_size, tile_size) float32: the local tiles row-major, then the global image.
    pixel_values: np.ndarray
    #: Tile grid; (0, 0) when the image was not split (a single global image).
    rows: int
    cols: int


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, compositing transparency onto white (transformers' ``convert_to_rgb``)."""
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def _size_for_longest_edge(height: int, width: int, longest_edge: int) -> tuple[int, int]:
    """Scale so the longest edge is ``longest_edge``, the other edge rounded up to even."""
    aspect_ratio = width / height
    if width >= height:
        width = longest_edge
        height = int(width / aspect_ratio)
        if height % 2 != 0:
            height += 1
    else:
        height = longest_edge
        width = int(height * aspect_ratio)
        if width % 2 != 0:
            width += 1
    height, width = max(height, 1), max(width, 1)

    # Then keep it below the absolute cap.
    aspect_ratio = width / height
    if width >= height and width > MAX_IMAGE_SIZE:
        width = MAX_IMAGE_SIZE
        height = int(width / aspect_ratio)
    elif height > width and height > MAX_IMAGE_SIZE:
        height = MAX_IMAGE_SIZE
        width = int(height * aspect_ratio)
    return max(height, 1), max(width, 1)


def _size_for_tiles(height: int, width: int, tile: int) -> tuple[int, int]:
    """Round both edges up to whole tiles, keeping the aspect ratio as transformers does."""
    aspect_ratio = width / height
    if width >= height:
        width = math.ceil(width / tile) * tile
        height = int(width / aspect_ratio)
        height = math.ceil(height / tile) * tile
    else:
        height = math.ceil(height / tile) * tile
        width = int(height * aspect_ratio)
        width = math.ceil(width / tile) * tile
    return height, width


def _resize(image: Image.Image, height: int, width: int, resample: int) -> Image.Image:
    return image.resize((width, height), resample=resample)


def _normalise(image: Image.Image, settings: ImageSettings) -> np.ndarray:
    array = np.asarray(image).transpose(2, 0, 1)  # CHW uint8
    if settings.do_rescale:
        # transformers upcasts to float64 before scaling, then casts to float32.
        array = (array.astype(np.float64) * settings.rescale_factor).astype(np.float32)
    else:
        array = array.astype(np.float32)
    if settings.do_normalize:
        mean = np.asarray(settings.image_mean, dtype=np.float32)[:, None, None]
        std = np.asarray(settings.image_std, dtype=np.float32)[:, None, None]
        array = (array - mean) / std
    return array.astype(np.float32, copy=False)


def split_into_tiles(image: Image.Image, settings: ImageSettings) -> tuple[list[Image.Image], int, int]:
    """Resize and cut one RGB image into tiles (plus the global image)."""
    resample = settings.resample
    if settings.do_resize and settings.longest_edge:
        height, width = _size_for_longest_edge(image.height, image.width, int(settings.longest_edge))
        image = _resize(image, height, width, resample)

    tile = settings.tile_size
    if not settings.do_image_splitting:
        return [_resize(image, tile, tile, resample)], 0, 0

    height, width = _size_for_tiles(image.height, image.width, tile)
    image = _resize(image, height, width, resample)
    if height <= tile and width <= tile:
        return [image], 0, 0
    rows = (height - tile) // tile + 1
    cols = (width - tile) // tile + 1
    tiles = [
        image.crop((col * tile, row * tile, (col + 1) * tile, (row + 1) * tile))
        for row in range(rows)
        for col in range(cols)
    ]
    tiles.append(_resize(image, tile, tile, resample))
    return tiles, rows, cols


def preprocess_image(image: Image.Image, settings: ImageSettings) -> PreprocessedImage:
    tiles, rows, cols = split_into_tiles(to_rgb(image), settings)
    pixel_values = np.stack([_normalise(tile, settings) for tile in tiles])
    return PreprocessedImage(pixel_values=pixel_values, rows=rows, cols=cols)
