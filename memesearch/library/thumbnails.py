"""Small previews for the web grid, cached in the data dir (never next to the user's files).

A thumbnail is keyed by the meme's content hash and the requested size, so a
changed file gets a new thumbnail and identical files share one.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from PIL import Image

from memesearch.config import Settings
from memesearch.errors import ImageError
from memesearch.library.decode import load_rgb
from memesearch.readonly import fallback_cache_dir, is_read_only
from memesearch.store.models import Meme


def thumbnail_path(settings: Settings, meme: Meme, px: int | None = None) -> Path:
    size = px or settings.thumbnail_px
    key = meme.sha256 or f"id{meme.id}-{int(meme.mtime)}-{meme.size}"
    return settings.thumbnails_dir / key[:2] / f"{key}-{size}.webp"


def ensure_thumbnail(settings: Settings, meme: Meme, px: int | None = None) -> Path:
    """The cached thumbnail of ``meme``, generated from its first frame on first request."""
    target = thumbnail_path(settings, meme, px)
    if target.is_file():
        return target
    if is_read_only(settings.thumbnails_dir):
        # A read-only data dir: cache new thumbnails in a private temp folder instead.
        target = fallback_cache_dir("thumbnails") / target.relative_to(settings.thumbnails_dir)
        if target.is_file():
            return target
    size = px or settings.thumbnail_px
    try:
        image = load_rgb(Path(meme.path), settings.max_megapixels)
    except OSError as exc:
        raise ImageError(f"cannot read {meme.path}: {exc.strerror or exc}") from exc
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write under a temporary name and rename: concurrent requests never see half a file.
    handle, partial = tempfile.mkstemp(dir=target.parent, suffix=".partial")
    try:
        with os.fdopen(handle, "wb") as out:
            image.save(out, format="WEBP", quality=80, method=4)
        os.replace(partial, target)
    except BaseException as exc:
        Path(partial).unlink(missing_ok=True)
        if isinstance(exc, ValueError):  # the encoder refused this picture (e.g. a side over WebP's 16383 px)
            raise ImageError(f"cannot make a thumbnail of {Path(meme.path).name}: {exc}") from exc
        raise
    return target
