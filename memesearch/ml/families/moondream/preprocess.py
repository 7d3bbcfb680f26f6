"""Moondream 0.0.x image preprocessing and crop-feature merging, in numpy.

Behaviour follows ``moondream/preprocess.py`` and ``OnnxVL.encode_image`` of the PyPI
client moondream 0.0.3-0.0.6 (the runtime the ``.mf`` bundles were published for):

* a global crop: the whole image resized to ``crop_size`` squared (Pillow bicubic);
* images whose longer side is below ``1.4 * crop_size`` get no local crops (template
  1x1); larger ones are cut into the grid among 1x2, 2x1, 2x2 (rows x cols) whose
  cols/rows ratio is closest to the image's aspect ratio (first one wins on ties),
  each tile ``W // cols`` by ``H // rows`` pixels from the top-left, resized likewise;
* pixels scaled to [0, 1] in float64, normalised with mean = std = 0.5, CHW, and only
  then rounded to float16 (the order matters for bit-exact inputs);
* after the vision encoder, tile features are stitched into one grid and pooled back
  to the global grid (windows of ``size - (out - 1) * (size // out)`` with stride
  ``size // out``, mean accumulated in float32 like numpy's float16 mean) and
  concatenated to the global features along channels; a 1x1 image repeats the
  global features instead.

Client quirk kept on purpose: when stitching, the client takes encoder outputs
``0 .. rows*cols - 1`` as the tiles, i.e. the global crop's features stand in for the
first tile and the last tile's features are never used (``patch_emb[r * cols + c]``
in ``OnnxVL.encode_image``, versions 0.0.3-0.0.6 and the GitHub head). The bundles were
only ever run that way, so we reproduce it; ``FIRST_TILE_OUTPUT`` names the offset.
"""

from __future__ import annotations

import math

import numpy as np
from PIL import Image

CROP_SIZE = 378
#: Below this multiple of the crop size an image is only seen as one global crop.
SMALL_IMAGE_FACTOR = 1.4
GRID_TEMPLATES = ((1, 2), (2, 1), (2, 2))  # (rows, cols)
#: Index of the encoder output used as the first tile (0, not 1: see the module docstring).
FIRST_TILE_OUTPUT = 0


def choose_grid(width: int, height: int, crop_size: int = CROP_SIZE) -> tuple[int, int]:
    """(rows, cols) of local tiles for an image; (1, 1) means the global crop only."""
    if max(width, height) < crop_size * SMALL_IMAGE_FACTOR:
        return (1, 1)
    aspect = width / height
    return min(GRID_TEMPLATES, key=lambda grid: abs(grid[1] / grid[0] - aspect))


def _to_chw(crop: Image.Image) -> np.ndarray:
    scaled = np.asarray(crop, dtype=np.uint8) / 255.0  # float64, as the client computes it
    return ((scaled - 0.5) / 0.5).transpose(2, 0, 1)


def make_crops(image: Image.Image, crop_size: int = CROP_SIZE) -> tuple[np.ndarray, tuple[int, int]]:
    """Float16 array (1 + rows*cols or 1, 3, crop, crop) and the (rows, cols) grid."""
    image = image.convert("RGB")
    square = (crop_size, crop_size)
    crops = [image.resize(square, Image.Resampling.BICUBIC)]
    grid = choose_grid(*image.size, crop_size=crop_size)
    if grid != (1, 1):
        rows, cols = grid
        tile_w, tile_h = image.width // cols, image.height // rows
        for row in range(rows):
            for col in range(cols):
                box = (col * tile_w, row * tile_h, (col + 1) * tile_w, (row + 1) * tile_h)
                crops.append(image.crop(box).resize(square, Image.Resampling.BICUBIC))
    return np.stack([_to_chw(crop) for crop in crops]).astype(np.float16), grid


def pool_to_grid(features: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    """Average (H, W, C) features down to (out_h, out_w, C) with the client's windows."""
    height, width, _ = features.shape
    stride_h, stride_w = height // out_h, width // out_w
    kernel_h, kernel_w = height - (out_h - 1) * stride_h, width - (out_w - 1) * stride_w
    # numpy averages float16 in float32 and rounds once at the end; do the same.
    accumulate = np.float32 if features.dtype == np.float16 else features.dtype
    pooled = np.empty((out_h, out_w, features.shape[2]), dtype=features.dtype)
    for i in range(out_h):
        for j in range(out_w):
            window = features[i * stride_h : i * stride_h + kernel_h, j * stride_w : j * stride_w + kernel_w]
            pooled[i, j] = window.mean(axis=(0, 1), dtype=accumulate)
    return pooled


def merge_crop_features(features: np.ndarray, grid: tuple[int, int]) -> np.ndarray:
    """(crops, tokens, C) encoder output -> (tokens, 2C) input of the vision projection."""
    global_features = features[0]
    if grid == (1, 1):
        return np.concatenate([global_features, global_features], axis=-1)
    rows, cols = grid
    tokens, channels = features.shape[1], features.shape[2]
    side = math.isqrt(tokens)
    if side * side != tokens:
        raise ValueError(f"vision encoder produced {tokens} tokens per crop, not a square grid")
    tiles = features[FIRST_TILE_OUTPUT : FIRST_TILE_OUTPUT + rows * cols].reshape(rows, cols, side, side, channels)
    stitched = tiles.transpose(0, 2, 1, 3, 4).reshape(rows * side, cols * side, channels)
    local = pool_to_grid(stitched, side, side).reshape(tokens, channels)
    return np.concatenate([global_features, local], axis=-1)
