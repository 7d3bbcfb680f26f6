"""Saving uploaded files into the uploads folder, safely.

The format is decided by the bytes (Pillow), never by the name or the browser's
content type; the saved name gets the extension of the real format, so the
scanner indexes it. Names never overwrite: ``cat.png`` becomes ``cat-1.png``.
Bytes already in the library are not written again: the result links to the
meme that has them (or to the earlier upload still waiting to be indexed).
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
import unicodedata
from collections.abc import Callable
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
    existing_id: int | None = None  # the meme that already has these bytes
    existing_path: Path | None = None  # an earlier upload of these bytes, not indexed yet

    @property
    def duplicate(self) -> bool:
        return self.existing_id is not None or self.existing_path is not None

    def as_dict(self) -> dict:
        message = None
        if self.existing_id is not None:
            message = "already in your library"
        elif self.existing_path is not None:
            message = f"already uploaded as {self.existing_path.name} (being indexed)"
        return {"name": self.original_name, "saved_as": self.path.name if self.path else None,
                "path": str(self.path) if self.path else None, "ok": self.error is None, "error": self.error,
                "duplicate": self.duplicate, "existing_id": self.existing_id,
                "existing_url": f"/memes/{self.existing_id}" if self.existing_id is not None else None,
                "message": message}


def same_bytes_in(folder: Path, data: bytes) -> Path | None:
    """A visible file of ``folder`` holding exactly ``data`` (only files of the same size are read)."""
    digest = None
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return None
    for entry in entries:
        try:
            if entry.name.startswith(".") or not entry.is_file(follow_symlinks=False) or entry.stat().st_size != len(data):
                continue
            digest = digest or hashlib.sha256(data).digest()
            with open(entry.path, "rb") as handle:
                if hashlib.sha256(handle.read()).digest() == digest:
                    return Path(entry.path)
        except OSError:
            continue
    return None


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


def save_upload(settings: Settings, filename: str, data: bytes, size: int | None = None,
                existing: Callable[[str], int | None] | None = None) -> SavedUpload:
    """Validate and store one uploaded file; failures are returned, not raised, so a batch goes on.

    ``size`` is the file's real size when only the first bytes past the limit were read;
    ``existing(sha256)`` names a present meme with those bytes: then nothing is written."""
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
    if existing is not None:
        result.existing_id = existing(hashlib.sha256(data).hexdigest())
        if result.existing_id is not None:
            return result
    result.existing_path = same_bytes_in(folder, data)
    if result.existing_path is not None:
        return result
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
