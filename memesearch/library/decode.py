"""Safe image decoding: formats checked by content, size caps, first frame, EXIF, alpha.

This module is the one boundary between a file's bytes and the rest of
memesearch. Whatever a damaged or hostile file makes Pillow raise (OSError,
ValueError, IndexError, struct.error, SyntaxError, even MemoryError) becomes an
ImageError with a one-line reason; callers record it against that file and go
on. Only KeyboardInterrupt and SystemExit (not ``Exception``s) pass through,
and an OSError of the file system (vanished file, permission denied, I/O error)
stays an OSError, because it says nothing about the content and callers report
it as "cannot read".

Memory is bounded by construction (see ``MAX_*`` below and docs/RELIABILITY.md):
- the pixel count is checked from the header before any pixel is decoded
  (``max_megapixels``; Pillow's own bomb guard stays on as a second line);
- exactly one frame is decoded (the first); other frames are only counted;
- PNG text/ICC chunks keep Pillow's per-chunk and total caps (1 MB / 64 MB
  decompressed); a bigger chunk makes the file an error, not an allocation;
- truncated files are errors (``LOAD_TRUNCATED_IMAGES`` stays False), so a
  half file never becomes a half-grey meme;
- files are read lazily from disk; callers cap the file size first.

MemoryError is recorded as the file's error rather than propagated: with the
caps above no file can ask for more than a few hundred MB, and on Linux a
process that is really out of memory is killed by the kernel before Python sees
a MemoryError, so in practice a MemoryError means one file asked for an absurd
allocation (a damaged length field) that was refused, and nothing is held.
"""

from __future__ import annotations

import errno
import io
import warnings
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageFile, ImageOps, PngImagePlugin, UnidentifiedImageError

from memesearch.errors import ImageError

# Pillow format names we index. Decided by file content, never by extension.
SUPPORTED_FORMATS = {"JPEG", "PNG", "WEBP", "GIF", "BMP", "MPO"}
EXTENSIONS = {".jpg", ".jpeg", ".png", ".webp", ".gif", ".bmp"}

# Deliberate Pillow settings (module globals: set here so that no other import changes our bounds).
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, not a grey-padded picture
PngImagePlugin.MAX_TEXT_CHUNK = 1 << 20  # 1 MB decompressed per text/ICC chunk (Pillow's default)
PngImagePlugin.MAX_TEXT_MEMORY = 64 << 20  # 64 MB of text chunks per file (Pillow's default)

# OSErrors that are about the file system, not the bytes. Others with an errno are caused by the
# content (EINVAL: a damaged TIFF makes Pillow seek to a negative offset; EOVERFLOW, EFBIG).
_FILE_SYSTEM_ERRNOS = {errno.EIO, errno.EACCES, errno.EPERM, errno.ENOENT, errno.ESTALE, errno.ENXIO,
                       errno.ENODEV, errno.ETIMEDOUT, errno.EISDIR}
_EXIF_ORIENTATION = 0x0112
_MAX_REASON_CHARS = 200


@dataclass
class ImageInfo:
    format: str
    width: int
    height: int
    frames: int


def probe(path: Path, max_megapixels: float) -> tuple[ImageInfo, Image.Image]:
    """Validate a file fully (decodes the first frame) and return its facts and RGB first frame.

    Raises ImageError for anything wrong with the content; OSError only when the file
    cannot be opened or read at all (see the module docstring).
    """
    path = Path(path)
    with open(path, "rb") as handle:
        return _decode(handle, path.name, max_megapixels)


def probe_bytes(data: bytes, max_megapixels: float, name: str = "the upload") -> tuple[ImageInfo, Image.Image]:
    """``probe`` for bytes in memory (uploads to the ML service)."""
    if not data:
        raise ImageError(f"{name} is empty (0 bytes)")
    return _decode(io.BytesIO(data), name, max_megapixels)


def load_rgb(path: Path, max_megapixels: float) -> Image.Image:
    """The first frame as RGB, upright (EXIF), transparent areas flattened on white."""
    return probe(path, max_megapixels)[1]


def _decode(handle, name: str, max_megapixels: float) -> tuple[ImageInfo, Image.Image]:
    try:
        with warnings.catch_warnings():
            # Pillow warns about files it can still read (bombs under our cap, invalid APNG
            # animation data with a usable default image); our checks below decide instead.
            warnings.simplefilter("ignore")
            with Image.open(handle) as image:
                _check(image, max_megapixels)
                info = ImageInfo(format="JPEG" if image.format == "MPO" else image.format,
                                 width=image.width, height=image.height, frames=_frame_count(image))
                return info, to_rgb(image)
    except ImageError:
        raise
    except OSError as exc:
        if exc.errno in _FILE_SYSTEM_ERRNOS:  # the disk or file system failed, not the content
            raise
        raise ImageError(_reason(exc, name)) from exc
    except Exception as exc:  # noqa: BLE001 - any decoder failure is this file's error, never the batch's
        raise ImageError(_reason(exc, name)) from exc


def _check(image: Image.Image, max_megapixels: float) -> None:
    if image.format not in SUPPORTED_FORMATS:
        raise ImageError(f"unsupported image format {image.format} (supported: JPEG, PNG, WebP, GIF, BMP)")
    if image.width < 1 or image.height < 1:
        raise ImageError("image has no pixels")
    megapixels = image.width * image.height / 1e6
    if megapixels > max_megapixels:
        raise ImageError(
            f"image is {image.width}x{image.height} ({megapixels:.0f} MP), over the {max_megapixels:g} MP limit",
        )


def _frame_count(image: Image.Image) -> int:
    # Headers only (GIF: block headers are walked without decoding pixels; APNG, WebP: declared).
    return max(1, int(getattr(image, "n_frames", 1)))


def _reason(exc: BaseException, name: str) -> str:
    """One line a person can act on, whatever the decoder raised."""
    if isinstance(exc, UnidentifiedImageError):
        return f"not an image Pillow can read: {name}"
    if isinstance(exc, Image.DecompressionBombError):
        return f"image too large (decompression bomb guard, over the limit): {_one_line(exc)}"
    if isinstance(exc, MemoryError):
        return f"{name} needs more memory to decode than is available; the file is probably damaged"
    text = _one_line(exc)
    if "MAX_TEXT_CHUNK" in text or "MAX_TEXT_MEMORY" in text:
        return (f"{name} has a metadata chunk (text or ICC profile) over the "
                f"{PngImagePlugin.MAX_TEXT_CHUNK >> 20} MB limit; the file is damaged or hostile")
    if isinstance(exc, OSError):  # Pillow's own messages ("image file is truncated", "broken data stream")
        return f"corrupt or truncated image {name}: {text}"
    return f"corrupt or truncated image {name} ({_class_name(exc)}: {text})"


def one_line_reason(exc: BaseException) -> str:
    """``Class: message`` on one bounded line, for errors recorded outside the decoder."""
    return f"{_class_name(exc)}: {_one_line(exc)}"


def _class_name(exc: BaseException) -> str:
    name = exc.__class__.__name__
    return f"{exc.__class__.__module__}.{name}" if name == "error" else name  # struct.error, zlib.error


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or "no details"
    return text if len(text) <= _MAX_REASON_CHARS else text[: _MAX_REASON_CHARS - 1] + "…"


def to_rgb(image: Image.Image) -> Image.Image:
    """The first frame as RGB, decoded once; copies are kept to the unavoidable ones (memory)."""
    image.seek(0)  # animated images: the first frame is the meme's identity
    image.load()
    frame: Image.Image = image
    if image.getexif().get(_EXIF_ORIENTATION, 1) in range(2, 9):
        frame = ImageOps.exif_transpose(image)
    if frame.mode in ("RGBA", "LA", "PA") or (frame.mode == "P" and "transparency" in frame.info):
        rgba = frame if frame.mode == "RGBA" else frame.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba)  # an RGBA mask uses its alpha band
        return background
    if frame.mode == "I;16" or frame.mode.startswith("I"):
        # 16-bit greyscale: scale to 8 bits instead of clipping to white.
        return frame.point(lambda v: v / 256).convert("L").convert("RGB")
    if frame.mode == "RGB" and frame is image:
        return image.copy()  # the caller closes ``image``; the result must outlive it
    return frame.convert("RGB")
