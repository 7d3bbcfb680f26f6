"""Every way a file's bytes enter memesearch, for the image fuzzers: the scanner's decode + hash,
the thumbnail cache, and the ML service's byte decoder. Anything they raise is an escape."""

from __future__ import annotations

from pathlib import Path

from memesearch.config import Settings
from memesearch.errors import ImageError
from memesearch.library.decode import probe_bytes
from memesearch.library.scanner import inspect_file
from memesearch.library.thumbnails import ensure_thumbnail
from memesearch.store.models import FileRecord, Meme


def as_meme(record: FileRecord, meme_id: int) -> Meme:
    return Meme(id=meme_id, path=record.path, folder_id=None, sha256=record.sha256, phash=record.phash,
                size=record.size, mtime=record.mtime, width=record.width, height=record.height,
                format=record.format, frames=record.frames, status=record.status, error=record.error,
                duplicate_of=None, ocr_text="", ocr_engine=None, user_description="", added_at=0, updated_at=0)


def is_clear(message: str | None) -> bool:
    """A reason a person can read: one line, more than a word, no traceback."""
    return bool(message) and len(message) > 10 and "\n" not in message and "Traceback" not in message


def decode_everywhere(path: Path, data: bytes, settings: Settings, meme_id: int) -> FileRecord:
    """Write ``data`` to ``path`` and run it through every decoding path; returns the scanner's record.
    Raises (an escape) on anything but a recorded error; asserts the error reads well."""
    path.write_bytes(data)
    record = inspect_file(path, path.stat(), 0, settings)
    if record.status == "ok":
        assert ensure_thumbnail(settings, as_meme(record, meme_id)).stat().st_size > 0
    else:
        assert is_clear(record.error), record.error
    try:
        probe_bytes(data, settings.max_megapixels)
    except ImageError as exc:
        assert is_clear(exc.message), exc.message
    return record
