"""What every ``models check`` row looks like, and the one fixed image all checks caption."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw


@dataclass
class CheckRow:
    model: str
    family: str
    backend: str
    dtype: str
    available: bool = False
    loads: bool = False
    parity: bool | None = None
    tokens_compared: int = 0
    ms_per_image: float | None = None
    error: str | None = None
    #: clip family: the lowest cosine between these embeddings and the reference's.
    min_cosine: float | None = None

    @property
    def failed(self) -> bool:
        """Something that should work does not: fp32 ONNX must match the reference exactly, and
        clip embeddings (continuous, so no near-tie flips) must match at every dtype compared."""
        judged = self.dtype == "fp32" or self.family == "clip"
        return self.available and (not self.loads or (judged and self.parity is False))


def fixed_image(width: int = 96, height: int = 72) -> Image.Image:
    """The same picture everywhere: a gradient, a block and a line, so features are not flat."""
    x = np.linspace(0, 255, width, dtype=np.float32)
    y = np.linspace(0, 255, height, dtype=np.float32)[:, None]
    pixels = np.stack([np.broadcast_to(x, (height, width)), np.broadcast_to(y, (height, width)),
                       np.full((height, width), 96.0)], axis=-1).astype(np.uint8)
    image = Image.fromarray(pixels, "RGB")
    draw = ImageDraw.Draw(image)
    draw.rectangle((width // 4, height // 4, width // 2, height // 2), fill=(250, 240, 20))
    draw.line((0, height - 1, width - 1, 0), fill=(10, 10, 10), width=3)
    return image
