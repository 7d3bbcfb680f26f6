"""Decoding uploaded image bytes with the same safety rules as files on disk."""

from __future__ import annotations

from PIL import Image

from memesearch.library.decode import probe_bytes


def decode_upload(data: bytes, max_megapixels: float) -> Image.Image:
    """RGB first frame of an uploaded image, or ImageError (-> 422) saying why not.

    ``probe_bytes`` turns every decoder failure into ImageError, so no upload can make
    the service answer 500.
    """
    return probe_bytes(data, max_megapixels, name="the uploaded image")[1]
