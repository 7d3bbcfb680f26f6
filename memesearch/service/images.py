"""Decoding uploaded image bytes with the same safety rules as files on disk."""

from __future__ import annotations

import io
import warnings

from PIL import Image, UnidentifiedImageError

from memesearch.errors import ImageError
from memesearch.library.decode import SUPPORTED_FORMATS, to_rgb


def decode_upload(data: bytes, max_megapixels: float) -> Image.Image:
    """RGB first frame of an uploaded image, or ImageError (-> 422) saying why not."""
    if not data:
        raise ImageError("empty image upload")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError as exc:
        raise ImageError("the upload is not an image Pillow can read") from exc
    except (Image.DecompressionBombError, OSError) as exc:
        raise ImageError(f"cannot open the uploaded image: {exc}") from exc
    if image.format not in SUPPORTED_FORMATS:
        raise ImageError(f"unsupported image format {image.format} (supported: JPEG, PNG, WebP, GIF, BMP)")
    megapixels = image.width * image.height / 1e6
    if megapixels > max_megapixels:
        raise ImageError(f"image is {image.width}x{image.height} ({megapixels:.0f} MP), over the {max_megapixels:g} MP limit")
    try:
        return to_rgb(image)
    except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as exc:
        raise ImageError(f"corrupt or truncated image: {exc}") from exc
