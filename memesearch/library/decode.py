"""Safe image decoding: formats checked by content, size caps, first frame, EXIF, alpha.

Every failure becomes an ImageError with a reason a person can act on; callers
record it against the file and move on.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageOps, UnidentifiedImageError

from memesearch.errors import ImageError

# Pillow format names we index. Decided by file content, never by extension.
SUPPORTED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "MPO"}
EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"}


@dataclass
class ImageInfo:
    format: str
    width: int
    height: int
    frames: int


def _open(path: Path, max_megapixels: float) -> Image.Image:
    try:
        with warnings.catch_warnings():
            # Our own cap below replaces Pillow's global one; its warning is not an error for us.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(path)
    except UnidentifiedImageError as exc:
        raise ImageError(f"not an image Pillow can read: {path.name}") from exc
    except Image.DecompressionBombError as exc:
        raise ImageError(f"image too large (decompression bomb guard): {exc}") from exc
    except OSError as exc:
        raise ImageError(f"cannot open {path.name}: {exc}") from exc
    if image.format not in SUPPORTED_FORMATS:
        image.close()
        raise ImageError(f"unsupported image format {image.format} (supported: JPEG, PNG, WebP, GIF, BMP)")
    megapixels = image.width * image.height / 1e6
    if megapixels > max_megapixels:
        image.close()
        raise ImageError(
            f"image is {image.width}x{image.height} ({megapixels:.0f} MP), over the {max_megapixels:g} MP limit",
        )
    if image.width < 1 or image.height < 1:
        image.close()
        raise ImageError("image has no pixels")
    return image


def probe(path: Path, max_megapixels: float) -> tuple[ImageInfo, Image.Image]:
    """Validate a file fully (decodes the first frame) and return its facts and RGB first frame."""
    image = _open(path, max_megapixels)
    try:
        frames = getattr(image, "n_frames", 1)
        info = ImageInfo(format="JPEG" if image.format == "MPO" else image.format, width=image.width,
                         height=image.height, frames=frames)
        rgb = to_rgb(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageError(f"corrupt or truncated image {path.name}: {exc}") from exc
    finally:
        image.close()
    return info, rgb


def load_rgb(path: Path, max_megapixels: float) -> Image.Image:
    """The first frame as RGB, upright (EXIF), transparent areas flattened on white."""
    return probe(path, max_megapixels)[1]


def to_rgb(image: Image.Image) -> Image.Image:
    image.seek(0)  # animated images: the first frame is the meme's identity
    frame = image.copy()
    frame.load()
    frame = ImageOps.exif_transpose(frame)
    if frame.mode in ("RGBA", "LA", "PA") or (frame.mode == "P" and "transparency" in frame.info):
        rgba = frame.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    if frame.mode == "I;16" or frame.mode.startswith("I"):
        # 16-bit greyscale: scale to 8 bits instead of clipping to white.
        return frame.point(lambda v: v / 256).convert("L").convert("RGB")
    return frame.convert("RGB")
