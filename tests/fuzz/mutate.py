"""A small structure-aware mutation fuzzer for image files (PNG, APNG, JPEG, GIF, WebP, BMP, TIFF).

``seed_images()`` builds valid files of every format; ``mutate(data, rng)`` damages one the
way real files get damaged (bit flips, byte edits, truncation) and the way hostile files are
made (chunk/segment duplication, removal, lying length fields, huge metadata chunks).
``mutated_corpus(n, seed)`` yields ``n`` reproducible (name, bytes) pairs over all formats.

Used by tests/fuzz/test_image_mutations.py (a seeded sample in CI) and bench/fuzz_images.py
(the long run). Pure Python + Pillow; no randomness other than the ``random.Random`` passed in.
"""

from __future__ import annotations

import io
import random
import struct
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from PIL import Image, ImageDraw

FORMATS = ("png", "apng", "jpeg", "gif", "webp", "bmp", "tiff")


@dataclass(frozen=True)
class Segment:
    """A byte range of a container: its whole extent and where its length field is (if any)."""

    start: int
    end: int
    length_at: int | None = None
    length_format: str = ">I"


# -- valid seeds ---------------------------------------------------------------------------------

def _picture(size=(48, 32), mode="RGB", shade=0) -> Image.Image:
    image = Image.new("RGB", size, (240, 240 - shade, 230))
    draw = ImageDraw.Draw(image)
    draw.rectangle((2, 2, size[0] // 2, size[1] // 2), fill=(200, 20 + shade, 20))
    draw.ellipse((size[0] // 3, size[1] // 3, size[0] - 2, size[1] - 2), fill=(20, 20, 200))
    draw.text((3, size[1] // 2), "meme", fill=(0, 0, 0))
    return image.convert(mode) if mode != "RGB" else image


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _frames(count: int, mode: str = "RGB") -> list[Image.Image]:
    return [_picture(shade=i * 30, mode=mode) for i in range(count)]


def seed_images() -> dict[str, list[bytes]]:
    """format -> a few valid files with the features decoders trip on (alpha, palettes, EXIF, animation)."""
    exif = Image.Exif()
    exif[0x0112] = 6
    frames = _frames(3)
    from PIL import PngImagePlugin

    text = PngImagePlugin.PngInfo()
    text.add_text("Comment", "a meme " * 20, zip=True)
    text.add_itxt("Title", "mème", zip=False)
    return {
        "png": [_encode(_picture(), "PNG"), _encode(_picture(mode="RGBA"), "PNG", pnginfo=text),
                _encode(_picture(mode="P"), "PNG", transparency=0), _encode(_picture(mode="L"), "PNG")],
        "apng": [_encode(frames[0], "PNG", save_all=True, append_images=frames[1:], duration=40, loop=0),
                 _encode(_picture(mode="RGBA"), "PNG", save_all=True, append_images=_frames(2, "RGBA"),
                         default_image=True, disposal=1, blend=1)],
        "jpeg": [_encode(_picture(), "JPEG", quality=80), _encode(_picture(), "JPEG", progressive=True, exif=exif),
                 _encode(_picture(mode="L"), "JPEG"), _encode(_picture(mode="CMYK"), "JPEG")],
        "gif": [_encode(_picture(mode="P"), "GIF"),
                _encode(_frames(1, "P")[0], "GIF", save_all=True, append_images=_frames(3, "P")[1:],
                        duration=30, loop=0, transparency=0, disposal=2, comment=b"fuzz")],
        "webp": [_encode(_picture(), "WEBP", quality=70), _encode(_picture(mode="RGBA"), "WEBP", lossless=True),
                 _encode(frames[0], "WEBP", save_all=True, append_images=frames[1:], duration=40, exif=exif)],
        "bmp": [_encode(_picture(), "BMP"), _encode(_picture(mode="P"), "BMP"), _encode(_picture(mode="1"), "BMP")],
        "tiff": [_encode(_picture(), "TIFF"), _encode(_picture(), "TIFF", compression="tiff_lzw"),
                 _encode(_picture(mode="RGBA"), "TIFF", compression="tiff_adobe_deflate")],
    }


# -- container parsing (best effort: mutated files may not parse, then generic edits apply) --------

def png_chunks(data: bytes) -> list[Segment]:
    segments, position = [], 8
    while position + 12 <= len(data):
        length = struct.unpack(">I", data[position : position + 4])[0]
        end = position + 12 + length
        if end > len(data):
            break
        segments.append(Segment(position, end, position, ">I"))
        position = end
    return segments


def _jpeg_segments(data: bytes) -> list[Segment]:
    segments, position = [], 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xDA or marker == 0xD9:  # start of scan: entropy-coded data follows
            break
        length = struct.unpack(">H", data[position + 2 : position + 4])[0]
        segments.append(Segment(position, min(len(data), position + 2 + length), position + 2, ">H"))
        position += 2 + length
    return segments


def _riff_chunks(data: bytes) -> list[Segment]:
    segments, position = [], 12
    while position + 8 <= len(data):
        length = struct.unpack("<I", data[position + 4 : position + 8])[0]
        end = position + 8 + length + (length & 1)
        segments.append(Segment(position, min(end, len(data)), position + 4, "<I"))
        position = end
    return segments


def gif_blocks(data: bytes) -> list[Segment]:
    """Extension and image blocks after the header and global palette (no length field of their own)."""
    if len(data) < 13:
        return []
    position = 13 + (3 << ((data[10] & 7) + 1) if data[10] & 0x80 else 0)
    segments = []
    while position < len(data) and data[position] in (0x21, 0x2C):
        start = position
        if data[position] == 0x21:
            position += 2
        else:
            if position + 10 > len(data):
                break
            flags = data[position + 9]
            position += 10 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0) + 1
        while position < len(data) and data[position] != 0:
            position += data[position] + 1
        position += 1
        segments.append(Segment(start, min(position, len(data))))
    return segments


def _tiff_entries(data: bytes) -> list[Segment]:
    """The 12-byte entries of the first IFD; the 'length' is each entry's value count."""
    if len(data) < 8 or data[:2] not in (b"II", b"MM"):
        return []
    order = "<" if data[:2] == b"II" else ">"
    offset = struct.unpack(order + "I", data[4:8])[0]
    if offset + 2 > len(data):
        return []
    count = struct.unpack(order + "H", data[offset : offset + 2])[0]
    entries = []
    for index in range(min(count, 64)):
        start = offset + 2 + 12 * index
        if start + 12 > len(data):
            break
        entries.append(Segment(start, start + 12, start + 4, order + "I"))
    return entries


def _bmp_fields() -> list[Segment]:
    # file size, pixel offset, header size, width, height, planes+bpp, compression, image size, colours
    return [Segment(2, 6, 2, "<I"), Segment(10, 14, 10, "<I"), Segment(14, 18, 14, "<I"), Segment(18, 22, 18, "<i"),
            Segment(22, 26, 22, "<i"), Segment(28, 30, 28, "<H"), Segment(30, 34, 30, "<I"), Segment(34, 38, 34, "<I"),
            Segment(46, 50, 46, "<I")]


def segments_of(data: bytes) -> list[Segment]:
    if data.startswith(b"\x89PNG"):
        return png_chunks(data)
    if data.startswith(b"\xff\xd8"):
        return _jpeg_segments(data)
    if data.startswith(b"RIFF"):
        return _riff_chunks(data)
    if data.startswith(b"GIF"):
        return gif_blocks(data)
    if data[:2] in (b"II", b"MM"):
        return _tiff_entries(data)
    if data.startswith(b"BM"):
        return [s for s in _bmp_fields() if s.end <= len(data)]
    return []


# -- mutations -------------------------------------------------------------------------------------

def bit_flip(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    for _ in range(rng.choice((1, 1, 2, 8))):
        position = rng.randrange(len(out))
        out[position] ^= 1 << rng.randrange(8)
    return bytes(out)


def byte_edit(data: bytes, rng: random.Random) -> bytes:
    out = bytearray(data)
    position = rng.randrange(len(out))
    special = (0x00, 0xFF, 0x7F, 0x80, 0x01, 0xFE)
    for offset in range(rng.choice((1, 2, 4))):
        if position + offset < len(out):
            out[position + offset] = rng.choice(special) if rng.random() < 0.6 else rng.randrange(256)
    return bytes(out)


def truncate(data: bytes, rng: random.Random) -> bytes:
    cut = rng.choice((rng.randrange(1, max(2, len(data))), rng.randrange(1, min(64, len(data)) + 1),
                      len(data) - rng.randrange(1, min(32, len(data)) + 1)))
    return data[: max(1, cut)]


def duplicate_segment(data: bytes, rng: random.Random) -> bytes:
    segments = segments_of(data)
    if not segments:
        return _duplicate_slice(data, rng)
    segment = rng.choice(segments)
    times = rng.choice((1, 1, 2, 50))
    return data[: segment.end] + data[segment.start : segment.end] * times + data[segment.end :]


def drop_segment(data: bytes, rng: random.Random) -> bytes:
    segments = segments_of(data)
    if not segments:
        start = rng.randrange(len(data))
        return data[:start] + data[start + rng.randrange(1, 64) :]
    segment = rng.choice(segments)
    return data[: segment.start] + data[segment.end :]


def resize_length(data: bytes, rng: random.Random) -> bytes:
    """Make a length/size field lie: 0, off by a little, or enormous."""
    segments = [s for s in segments_of(data) if s.length_at is not None]
    if not segments:
        return byte_edit(data, rng)
    segment = rng.choice(segments)
    size = struct.calcsize(segment.length_format)
    (value,) = struct.unpack_from(segment.length_format, data, segment.length_at)
    limit = (1 << (8 * size - (1 if segment.length_format[-1].islower() else 0))) - 1
    lower = -limit - 1 if segment.length_format[-1].islower() else 0
    new = rng.choice((0, 1, value + 1, value - 1, value * 2, value + 4096, limit, limit // 2, lower))
    new = max(lower, min(limit, new))
    out = bytearray(data)
    struct.pack_into(segment.length_format, out, segment.length_at, new)
    return bytes(out)


def huge_metadata(data: bytes, rng: random.Random) -> bytes:
    """Insert metadata far larger than any meme carries (decompression bombs in text/ICC chunks)."""
    size = rng.choice((70_000, 1_100_000, 2_000_000, 8_000_000))
    if data.startswith(b"\x89PNG"):
        kind = rng.choice((b"zTXt", b"iTXt", b"iCCP", b"tEXt"))
        packed = zlib.compress(b"A" * size, 9)
        body = {b"zTXt": b"Comment\0\0" + packed, b"iTXt": b"Comment\0\1\0\0\0" + packed,
                b"iCCP": b"icc\0\0" + packed, b"tEXt": b"Comment\0" + b"A" * min(size, 1_100_000)}[kind]
        chunk = struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        chunks = png_chunks(data)
        at = chunks[0].end if chunks else min(33, len(data))  # after IHDR
        if rng.random() < 0.5 and len(chunks) > 2:
            at = rng.choice(chunks[1:]).start
        return data[:at] + chunk + data[at:]
    if data.startswith(b"\xff\xd8"):
        count = max(1, min(size // 65_000, 40))
        segment = b"\xff\xe1" + struct.pack(">H", 65_535) + b"Exif\0\0" + b"\0" * 65_527
        return data[:2] + segment * count + data[2:]
    if data.startswith(b"RIFF"):
        kind = rng.choice((b"EXIF", b"XMP ", b"ICCP"))
        chunk = kind + struct.pack("<I", size) + b"\0" * size
        out = data[:12] + data[12:] + chunk
        return b"RIFF" + struct.pack("<I", len(out) - 8) + out[8:]
    if data.startswith(b"GIF"):
        blocks = b"".join(b"\xff" + b"C" * 255 for _ in range(size // 256))
        comment = b"\x21\xfe" + blocks + b"\x00"
        segments = gif_blocks(data)
        at = segments[0].start if segments else len(data) - 1
        return data[:at] + comment + data[at:]
    if data[:2] in (b"II", b"MM") and len(data) >= 8:
        order = "<" if data[:2] == b"II" else ">"
        # A new first IFD with one enormous ASCII tag (ImageDescription), chained to the old one.
        old = data[4:8]
        ifd_at = len(data) + size
        entry = struct.pack(order + "HHII", 270, 2, size, len(data))
        ifd = struct.pack(order + "H", 1) + entry + old
        return data[:4] + struct.pack(order + "I", ifd_at) + data[8:] + b"x" * size + ifd
    return data + b"\0" * size


def _duplicate_slice(data: bytes, rng: random.Random) -> bytes:
    start = rng.randrange(len(data))
    piece = data[start : start + rng.randrange(1, 256)]
    at = rng.randrange(len(data) + 1)
    return data[:at] + piece + data[at:]


MUTATIONS: dict[str, Callable[[bytes, random.Random], bytes]] = {
    "bit_flip": bit_flip, "byte_edit": byte_edit, "truncate": truncate, "duplicate_segment": duplicate_segment,
    "drop_segment": drop_segment, "resize_length": resize_length, "huge_metadata": huge_metadata,
}
# Cheap edits dominate (they find most decoder bugs); big inserts are rarer because each costs MBs.
_WEIGHTS = {"bit_flip": 5, "byte_edit": 4, "truncate": 3, "duplicate_segment": 3, "drop_segment": 3,
            "resize_length": 4, "huge_metadata": 1}


def mutate(data: bytes, rng: random.Random) -> tuple[bytes, list[str]]:
    """1-3 stacked mutations; returns the new bytes and the names of what was done."""
    names = rng.choices(list(_WEIGHTS), weights=list(_WEIGHTS.values()), k=rng.choice((1, 1, 2, 3)))
    if "huge_metadata" in names:  # at most one multi-MB insertion per file
        names = [n for n in names if n != "huge_metadata"] + ["huge_metadata"]
    for name in names:
        if data:
            data = MUTATIONS[name](data, rng)
    return data, names


def mutated_corpus(count: int, seed: int, formats: tuple[str, ...] = FORMATS) -> Iterator[tuple[str, str, bytes]]:
    """``count`` reproducible (format, description, bytes) triples, formats in turn."""
    rng = random.Random(seed)
    seeds = seed_images()
    for index in range(count):
        fmt = formats[index % len(formats)]
        original = rng.choice(seeds[fmt])
        data, names = mutate(original, rng)
        yield fmt, f"{index:05d}-{fmt}-{'+'.join(names)}", data


EXTENSION = {"png": ".png", "apng": ".png", "jpeg": ".jpg", "gif": ".gif", "webp": ".webp", "bmp": ".bmp",
             "tiff": ".png"}  # TIFF is not indexed: named like a PNG so the scanner reads (and refuses) it
