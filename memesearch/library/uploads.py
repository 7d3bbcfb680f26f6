"""Saving uploaded files into the uploads folder, safely.

The format is decided by the bytes (Pillow), never by the name or the browser's
content type; the saved name gets the extension of the real format, so the
scanner indexes it. Names never overwrite: ``cat.png`` becomes ``cat-1.png``.
"""

from __future__ import annotations

import os
import re
import tempfile
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from memesearch.config import Settings
from memesearch.errors import ImageError, InvalidInputError
from memesearch.library.decode import probe

_EXTENSION_OF = {"JPEG": ".jpg", "PNG": ".png", "WEBP": ".webp", "GIF": ".gif", "BMP": ".bmp"}
_UNSAFE = re.compile(r"[^\w.\- ]+", re.UNICODE)
_MAX_STEM = 120


@dataclass
class SavedUpload:
    original_name: str
    path: Path | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        return {"name": self.original_name, "saved_as": self.path.name if self.path else None,
                "path": str(self.path) if self.path else None, "ok": self.error is None, "error": self.error}


def safe_stem(filename: str) -> str:
    """A harmless file stem: no directories, no control or shell characters, bounded length."""
    name = unicodedata.normalize("NFC", Path(filename.replace("\\", "/")).name)
    stem = _UNSAFE.sub("_", Path(name).stem).strip(" ._")
    return stem[:_MAX_STEM] or "upload"


def _claim_name(folder: Path, stem: str, extension: str) -> Path:
    """Create an empty file with a free name (O_EXCL: two uploads never get the same name)."""
    for number in range(0, 10_000):
        candidate = folder / (f"{stem}{extension}" if number == 0 else f"{stem}-{number}{extension}")
        try:
            os.close(os.open(candidate, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644))
        except FileExistsError:
            continue
        return candidate
    raise InvalidInputError(f"too many files named {stem}{extension} in the uploads folder")


def save_upload(settings: Settings, filename: str, data: bytes, size: int | None = None) -> SavedUpload:
    """Validate and store one uploaded file; failures are returned, not raised, so a batch goes on.

    ``size`` is the file's real size when only the first bytes past the limit were read."""
    result = SavedUpload(original_name=filename or "upload")
    limit = settings.max_upload_mb * 1e6
    if not data:
        result.error = "empty file"
        return result
    if len(data) > limit:
        real = max(size or 0, len(data))
        result.error = f"file is {real / 1e6:.1f} MB, over the {settings.max_upload_mb:g} MB upload limit"
        return result
    folder = settings.uploads_dir
    folder.mkdir(parents=True, exist_ok=True)
    # Check the bytes in a hidden temp file (the scanner skips dot files), then move into place.
    handle, temp_name = tempfile.mkstemp(dir=folder, prefix=".upload-")
    temp = Path(temp_name)
    try:
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        try:
            info, _ = probe(temp, settings.max_megapixels)
        except ImageError as exc:
            result.error = exc.message.replace(temp.name, result.original_name)
            return result
        extension = _EXTENSION_OF.get(info.format)
        if extension is None:
            result.error = f"unsupported image format {info.format}"
            return result
        target = _claim_name(folder, safe_stem(filename), extension)
        os.replace(temp, target)
        result.path = target
        return result
    finally:
        temp.unlink(missing_ok=True)
