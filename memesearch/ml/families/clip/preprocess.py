"""CLIP image preprocessing with Pillow and numpy, equal to transformers' ``CLIPImageProcessor``.

Resize the shortest side (bicubic), centre-crop, rescale to [0, 1], normalise per channel.
Every step copies transformers' arithmetic (float64 rescale then float32, integer crop
offsets), so the pixel values are identical, not merely close. A channel's 8-bit value has
only 256 possible results, so they are computed once per setting and looked up (about 1 ms
less per image than the float arithmetic on every pixel, bench/bench_clip.py). Settings come from the
``visual/preprocess_cfg.json`` of the Immich layout.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
from PIL import Image

from memesearch.errors import InvalidInputError, ModelUnavailableError

PREPROCESS_FILE = "visual/preprocess_cfg.json"
OPENAI_MEAN = (0.48145466, 0.4578275, 0.40821073)
OPENAI_STD = (0.26862954, 0.2613026, 0.2757771)
#: Longest resized side computed in full. A banner of 1 x 100000 px would otherwise be resized
#: to 224 x 22 million (GBs); past this only the region the crop keeps is resized, which
#: differs from transformers by at most a few levels in a few pixels.
MAX_RESIZED_SIDE = 4096
_RESAMPLING = {"bicubic": Image.Resampling.BICUBIC, "bilinear": Image.Resampling.BILINEAR}


@dataclass(frozen=True)
class ImageSettings:
    #: Side of the square the model sees.
    crop: int = 224
    #: The shortest side after resizing (before the crop); usually equal to ``crop``.
    shortest_edge: int = 224
    mean: tuple[float, float, float] = OPENAI_MEAN
    std: tuple[float, float, float] = OPENAI_STD
    interpolation: str = "bicubic"

    @classmethod
    def from_file(cls, path: Path) -> ImageSettings:
        """Read Immich's preprocess_cfg.json (open_clip's preprocess config)."""
        try:
            raw = json.loads(Path(path).read_text(encoding="utf-8"))
            size = raw["size"]
            crop = int(size[0] if isinstance(size, list) else size)
            if isinstance(size, list) and len(size) == 2 and int(size[1]) != crop:
                raise ValueError(f"non-square size {size}")
            if raw.get("resize_mode", "shortest") != "shortest":
                raise ValueError(f"resize_mode {raw['resize_mode']!r} (only 'shortest' is supported)")
            interpolation = str(raw.get("interpolation", "bicubic"))
            if interpolation not in _RESAMPLING:
                raise ValueError(f"interpolation {interpolation!r}")
            return cls(
                crop=crop,
                shortest_edge=int(raw.get("resize_shortest_edge", crop)),
                mean=tuple(float(v) for v in raw["mean"]),
                std=tuple(float(v) for v in raw["std"]),
                interpolation=interpolation,
            )
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            raise ModelUnavailableError(
                f"cannot read the CLIP preprocessing settings {path}: {exc}",
                hint="download the model again with `memesearch models pull`",
            ) from exc

    def to_json(self) -> dict:
        """The same file in Immich's format (plus our key for a resize that differs from the crop)."""
        data = {
            "size": [self.crop, self.crop],
            "mode": "RGB",
            "mean": list(self.mean),
            "std": list(self.std),
            "interpolation": self.interpolation,
            "resize_mode": "shortest",
            "fill_color": 0,
        }
        if self.shortest_edge != self.crop:
            data["resize_shortest_edge"] = self.shortest_edge
        return data


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with any transparency composited onto white (as transformers does)."""
    if "A" in image.getbands() or image.info.get("transparency") is not None:
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image if image.mode == "RGB" else image.convert("RGB")  # convert() would copy an RGB image


def resized_size(width: int, height: int, shortest_edge: int) -> tuple[int, int]:
    """(width, height) with the short side at ``shortest_edge``; the long side truncated, like transformers."""
    if width <= height:
        return shortest_edge, int(shortest_edge * height / width)
    return int(shortest_edge * width / height), shortest_edge


def _center_crop(pixels: np.ndarray, crop: int) -> np.ndarray:
    """Crop an HWC array to crop x crop around its centre; zero-pad a side that is too short."""
    height, width = pixels.shape[:2]
    top, left = (height - crop) // 2, (width - crop) // 2
    if top >= 0 and left >= 0:
        return pixels[top : top + crop, left : left + crop]
    out_h, out_w = max(crop, height), max(crop, width)
    padded = np.zeros((out_h, out_w, pixels.shape[2]), dtype=pixels.dtype)
    pad_top, pad_left = -(-(out_h - height) // 2), -(-(out_w - width) // 2)
    padded[pad_top : pad_top + height, pad_left : pad_left + width] = pixels
    return _center_crop(padded, crop)


def _resize_and_crop(rgb: Image.Image, settings: ImageSettings) -> np.ndarray:
    width, height = resized_size(rgb.width, rgb.height, settings.shortest_edge)
    resample = _RESAMPLING[settings.interpolation]
    if max(width, height) <= MAX_RESIZED_SIDE or settings.crop > settings.shortest_edge:
        return _center_crop(np.asarray(rgb.resize((width, height), resample=resample)), settings.crop)
    crop = settings.crop
    top, left = (height - crop) // 2, (width - crop) // 2
    sx, sy = rgb.width / width, rgb.height / height
    box = (left * sx, top * sy, (left + crop) * sx, (top + crop) * sy)
    return np.asarray(rgb.resize((crop, crop), resample=resample, box=box))


def preprocess(image: Image.Image, settings: ImageSettings = ImageSettings()) -> np.ndarray:
    """One image as the model's float32 input, shape (3, crop, crop)."""
    if not isinstance(image, Image.Image):
        raise InvalidInputError(f"expected a PIL image, got {type(image).__name__}")
    if image.width < 1 or image.height < 1:
        raise InvalidInputError(f"image has no pixels ({image.width}x{image.height})")
    pixels = _resize_and_crop(to_rgb(image), settings)
    table = _normalised_levels(settings.mean, settings.std)
    out = np.empty((3, *pixels.shape[:2]), dtype=np.float32)
    for channel in range(3):
        np.take(table[channel], pixels[..., channel], out=out[channel])
    return out


@lru_cache(maxsize=8)
def _normalised_levels(mean: tuple[float, ...], std: tuple[float, ...]) -> np.ndarray:
    """(3, 256) float32: what transformers' rescale + normalise makes of each 8-bit level."""
    scaled = (np.arange(256, dtype=np.float64) * (1 / 255)).astype(np.float32)
    mean32 = np.asarray(mean, dtype=np.float32)[:, None]
    std32 = np.asarray(std, dtype=np.float32)[:, None]
    return (scaled[None, :] - mean32) / std32


def preprocess_batch(images: list[Image.Image], settings: ImageSettings = ImageSettings()) -> np.ndarray:
    return np.stack([preprocess(image, settings) for image in images])
