"""A generated corpus of hostile inputs, each with the outcome memesearch must produce.

``expected`` is one of:
- ``"indexed"``: an odd but valid image; it must be indexed (and, for uploads/service, accepted);
- ``"error:<substring>"``: a recorded error whose message contains the substring (422 for the service);
- ``"skipped:<substring>"``: the scanner refuses the path before reading it (symlinks, vanished files);
- ``"ignored"``: not a regular file (FIFO, directory named like an image): never opened, never recorded.

Cases with ``data`` are plain files and also go through the ML service and the web upload;
cases with ``setup`` build something only a file system can hold (links, FIFOs, vanishing files).
"""

from __future__ import annotations

import io
import os
import struct
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image, ImageDraw

Setup = Callable[[Path, Path], None]  # (library folder, a folder outside it)


@dataclass
class Case:
    name: str                      # path relative to the library folder
    expected: str
    data: bytes | None = None      # plain file content
    setup: Setup | None = None     # builds the entry itself (links, FIFOs, ...)
    vanish: bool = False           # deleted by the scan hook right after the walk reports it
    as_bytes: str | None = None    # expected outcome when the bytes are uploaded, if not ``expected``

    @property
    def upload_expected(self) -> str:
        return self.as_bytes or self.expected

    @property
    def outcome(self) -> str:
        return self.expected.split(":", 1)[0]

    @property
    def reason(self) -> str:
        return self.expected.split(":", 1)[1] if ":" in self.expected else ""


def _encode(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _picture(size=(96, 64), mode="RGB") -> Image.Image:
    image = Image.new("RGB", size, (240, 240, 240))
    draw = ImageDraw.Draw(image)
    draw.rectangle((4, 4, size[0] // 2, size[1] // 2), fill=(200, 20, 20))
    draw.ellipse((size[0] // 3, size[1] // 3, size[0] - 4, size[1] - 4), fill=(20, 20, 200))
    return image.convert(mode) if mode != "RGB" else image


def _png_with_size(width: int, height: int) -> bytes:
    """A tiny valid-looking PNG whose header declares ``width`` x ``height`` (a decompression bomb)."""
    data = bytearray(_encode(_picture((8, 8)), "PNG"))
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    return bytes(data)


def _gif_with_size(width: int, height: int) -> bytes:
    data = bytearray(_encode(_picture((8, 8)).convert("P"), "GIF"))
    data[6:10] = struct.pack("<HH", width, height)  # logical screen
    return bytes(data)


def _jpeg_with_size(width: int, height: int) -> bytes:
    data = bytearray(_encode(_picture((16, 16)), "JPEG"))
    sof = data.find(b"\xff\xc0")
    data[sof + 5 : sof + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _exif_rotated(orientation: int) -> bytes:
    image = _picture((80, 40))
    exif = image.getexif()
    exif[0x0112] = orientation
    return _encode(image, "JPEG", exif=exif)


def _animated_gif(frames: int, size=(24, 24)) -> bytes:
    images = [Image.new("P", size, i % 250) for i in range(frames)]
    for i, image in enumerate(images):
        ImageDraw.Draw(image).rectangle((i % size[0], 0, i % size[0], size[1]), fill=255)
    return _encode(images[0], "GIF", save_all=True, append_images=images[1:], duration=20, loop=0)


def _sixteen_bit() -> bytes:
    image = Image.new("I;16", (64, 32))
    image.putdata([(x * 1000) % 65535 for x in range(64 * 32)])
    return _encode(image, "PNG")


def _palette_transparent() -> bytes:
    image = _picture().convert("P")
    return _encode(image, "PNG", transparency=0)




def _png_chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def _png_metadata_bomb(kind: bytes) -> bytes:
    """A 64x64 PNG with a text/ICC chunk that inflates to 2 MB (Pillow refuses over 1 MB with ValueError)."""
    packed = zlib.compress(b"A" * 2_000_000, 9)
    body = {b"zTXt": b"Comment\0\0", b"iTXt": b"Comment\0\1\0\0\0", b"iCCP": b"icc\0\0"}[kind] + packed
    png = _encode(Image.new("RGB", (64, 64)), "PNG")
    return png[:33] + _png_chunk(kind, body) + png[33:]  # right after IHDR


def _png_short_header() -> bytes:
    """IHDR declaring 12 bytes instead of 13 (valid CRC): Pillow raises ValueError, not OSError."""
    png = _encode(_picture((8, 8)), "PNG")
    return png[:8] + _png_chunk(b"IHDR", png[16:28]) + png[33:]


def _apng(frames: int = 3) -> bytes:
    images = [_picture((32, 24)).rotate(20 * i) for i in range(frames)]
    return _encode(images[0], "PNG", save_all=True, append_images=images[1:], duration=50, loop=0)


def _apng_with_short_chunk(kind: bytes) -> bytes:
    """An APNG whose first ``kind`` (acTL/fcTL/fdAT) chunk is cut to 4 bytes, CRC fixed."""
    from tests.fuzz.mutate import png_chunks

    data = _apng()
    chunk = next(c for c in png_chunks(data) if data[c.start + 4 : c.start + 8] == kind)
    return data[: chunk.start] + _png_chunk(kind, data[chunk.start + 8 : chunk.start + 12]) + data[chunk.end :]


def _gif_cut_after_second_frame_header() -> bytes:
    """An animated GIF that ends right after a later frame's image descriptor: counting frames
    reads past the end (IndexError in Pillow), while the first frame decodes fine."""
    from tests.fuzz.mutate import gif_blocks

    data = _animated_gif(3)
    descriptors = [b for b in gif_blocks(data) if data[b.start] == 0x2C]
    second = descriptors[1].start
    return data[: second + 10]


def _symlink(name: str, target: Callable[[Path, Path], Path], is_dir: bool = False) -> Setup:
    def setup(folder: Path, outside: Path) -> None:
        link = folder / name
        link.parent.mkdir(parents=True, exist_ok=True)
        link.symlink_to(target(folder, outside), target_is_directory=is_dir)
    return setup


def _outside_file(name: str, data: bytes) -> Callable[[Path, Path], Path]:
    def target(folder: Path, outside: Path) -> Path:
        path = outside / name
        path.write_bytes(data)
        return path
    return target


def _fifo(name: str) -> Setup:
    def setup(folder: Path, outside: Path) -> None:
        os.mkfifo(folder / name)  # opening it would block forever: the scanner must not
    return setup


def _directory(name: str) -> Setup:
    def setup(folder: Path, outside: Path) -> None:
        (folder / name).mkdir()
    return setup


def hostile_cases() -> list[Case]:
    png = _encode(_picture(), "PNG")
    jpeg = _encode(_picture(), "JPEG")
    gif = _encode(_picture().convert("P"), "GIF")
    webp = _encode(_picture(), "WEBP")
    small_png = _encode(_picture((8, 8)), "PNG")
    html = b"<!doctype html><html><body><script>fetch('/api/memes',{method:'DELETE'})</script></body></html>"
    svg = b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'><script>alert(document.cookie)</script></svg>"
    long_stem = "長" * 80  # 240 bytes of UTF-8: near the 255-byte name limit
    cases = [
        # Truncated and damaged files of every format.
        Case("truncated/half.jpg", "error:truncated", data=jpeg[: len(jpeg) // 2]),
        Case("truncated/header-only.jpg", "error:", data=jpeg[:20]),
        Case("truncated/half.png", "error:", data=png[: len(png) // 2]),
        Case("truncated/sixty-bytes.png", "error:", data=png[:60]),
        Case("truncated/half.gif", "error:", data=gif[: len(gif) // 2]),
        Case("truncated/half.webp", "error:", data=webp[: len(webp) // 2]),
        Case("truncated/signature-only.png", "error:", data=png[:8]),
        Case("truncated/bad-crc.png", "error:", data=png[:33] + bytes(b ^ 0xFF for b in png[33:80]) + png[80:]),
        # Damage that made Pillow raise something other than OSError (ValueError, IndexError).
        Case("broken/ztxt-2mb.png", "error:metadata chunk", data=_png_metadata_bomb(b"zTXt")),
        Case("broken/itxt-2mb.png", "error:metadata chunk", data=_png_metadata_bomb(b"iTXt")),
        Case("broken/iccp-2mb.png", "error:metadata chunk", data=_png_metadata_bomb(b"iCCP")),
        Case("broken/short-ihdr.png", "error:truncated ihdr", data=_png_short_header()),
        Case("broken/apng-short-actl.png", "error:actl", data=_apng_with_short_chunk(b"acTL")),
        Case("broken/apng-short-fctl.png", "error:fctl", data=_apng_with_short_chunk(b"fcTL")),
        Case("broken/apng-short-fdat.png", "indexed", data=_apng_with_short_chunk(b"fdAT")),  # a later frame: never decoded
        Case("broken/gif-cut-in-second-frame.gif", "error:corrupt", data=_gif_cut_after_second_frame_header()),
        # Empty files.
        Case("empty/empty.jpg", "error:empty", data=b""),
        Case("empty/empty.png", "error:empty", data=b""),
        Case("empty/empty.gif", "error:empty", data=b""),
        Case("empty/empty.webp", "error:empty", data=b""),
        # Not images at all, named like images.
        Case("fake/text.jpg", "error:not an image", data=b"just some notes, not a picture\n" * 20),
        Case("fake/json.gif", "error:not an image", data=b'{"hello": "world"}'),
        Case("fake/html-script.png", "error:not an image", data=html),
        Case("fake/svg-script.png", "error:not an image", data=svg),
        Case("fake/svg-script.jpg", "error:not an image", data=svg),
        Case("fake/pdf.webp", "error:not an image", data=b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n1 0 obj<<>>endobj\n%%EOF"),
        Case("fake/tiff-named.png", "error:unsupported image format", data=_encode(_picture(), "TIFF")),
        Case("fake/random-bytes.jpg", "error:", data=bytes((i * 7919 + 13) % 256 for i in range(4096))),
        # Decompression bombs: tiny files declaring gigapixels.
        Case("bombs/100k-square.png", "error:limit", data=_png_with_size(100_000, 100_000)),
        Case("bombs/65k-square.gif", "error:limit", data=_gif_with_size(65_535, 65_535)),
        Case("bombs/65k-square.jpg", "error:limit", data=_jpeg_with_size(65_000, 65_000)),
        # Extreme shapes, odd modes: all valid, all must be indexed.
        Case("odd/1x1.png", "indexed", data=_encode(Image.new("RGB", (1, 1), (5, 5, 5)), "PNG")),
        Case("odd/1x1.jpg", "indexed", data=_encode(Image.new("RGB", (1, 1), (250, 5, 5)), "JPEG")),
        Case("odd/1x1.gif", "indexed", data=_encode(Image.new("P", (1, 1), 3), "GIF")),
        Case("odd/20000x20.png", "indexed", data=_encode(_picture((20_000, 20)), "PNG")),
        Case("odd/20x20000.png", "indexed", data=_encode(_picture((20, 20_000)), "PNG")),
        Case("odd/cmyk.jpg", "indexed", data=_encode(_picture(mode="CMYK"), "JPEG")),
        Case("odd/16-bit-grey.png", "indexed", data=_sixteen_bit()),
        Case("odd/palette.png", "indexed", data=_encode(_picture().convert("P"), "PNG")),
        Case("odd/palette-transparent.png", "indexed", data=_palette_transparent()),
        Case("odd/rgba.png", "indexed", data=_encode(_picture(mode="RGBA"), "PNG")),
        Case("odd/grey-alpha.png", "indexed", data=_encode(_picture(mode="LA"), "PNG")),
        Case("odd/one-bit.png", "indexed", data=_encode(_picture(mode="1"), "PNG")),
        Case("odd/alpha.webp", "indexed", data=_encode(_picture(mode="RGBA"), "WEBP")),
        Case("odd/grey.jpg", "indexed", data=_encode(_picture(mode="L"), "JPEG")),
        Case("odd/plain.bmp", "indexed", data=_encode(_picture(), "BMP")),
        Case("odd/progressive.jpg", "indexed", data=_encode(_picture(), "JPEG", progressive=True)),
        Case("odd/exif-rotate-90.jpg", "indexed", data=_exif_rotated(6)),
        Case("odd/exif-rotate-270.jpg", "indexed", data=_exif_rotated(8)),
        Case("odd/exif-orientation-invalid.jpg", "indexed", data=_exif_rotated(42)),
        Case("odd/animated-1000-frames.gif", "indexed", data=_animated_gif(1000)),
        Case("odd/apng.png", "indexed", data=_apng()),
        Case("odd/jpeg-named.png", "indexed", data=jpeg),  # format by content, not by name
        Case("odd/trailing-garbage.png", "indexed", data=png + b"<script>alert(1)</script>" * 10),
        # Names: unicode, very long, dots, shell and JSON metacharacters.
        Case("names/日本語のミーム.png", "indexed", data=small_png),
        Case("names/emoji 😂🔥.png", "indexed", data=_encode(_picture((9, 9)), "PNG")),
        Case("names/cafe\u0301-nfd.png", "indexed", data=_encode(_picture((10, 9)), "PNG")),
        Case("names/مرحبا\u202eRTL.png", "indexed", data=_encode(_picture((11, 9)), "PNG")),
        Case(f"names/{long_stem}.png", "indexed", data=_encode(_picture((12, 9)), "PNG")),
        Case("names/x..evil..png", "indexed", data=_encode(_picture((13, 9)), "PNG")),
        Case("names/x..%2f..%2fetc%2fpasswd.png", "indexed", data=_encode(_picture((14, 9)), "PNG")),
        Case("names/x..\\..\\windows.png", "indexed", data=_encode(_picture((15, 9)), "PNG")),
        # Hidden files (dot names, macOS AppleDouble forks) are skipped by design, silently.
        Case("names/..hidden-dots.png", "ignored", data=_encode(_picture((13, 10)), "PNG"), as_bytes="indexed"),
        Case("names/._apple-double.jpg", "ignored", data=b"\x00\x05\x16\x07" + b"\x00" * 60,
             as_bytes="error:not an image"),
        Case("names/-rf --no-preserve-root.png", "indexed", data=_encode(_picture((16, 9)), "PNG")),
        Case("names/quote\"'`$(id);.png", "indexed", data=_encode(_picture((17, 9)), "PNG")),
        Case("names/new\nline.png", "indexed", data=_encode(_picture((18, 9)), "PNG")),
        Case("names/UPPER.PNG", "indexed", data=_encode(_picture((19, 9)), "PNG")),
        Case("/".join(["deep"] * 30) + "/nested.png", "indexed", data=_encode(_picture((20, 9)), "PNG")),
        # File-system tricks.
        Case("links/outside.png", "skipped:outside", setup=_symlink("links/outside.png", _outside_file("secret.png", png))),
        Case("links/etc-passwd.png", "skipped:outside", setup=_symlink("links/etc-passwd.png", lambda f, o: Path("/etc/passwd"))),
        Case("links/dev-zero.jpg", "skipped:outside", setup=_symlink("links/dev-zero.jpg", lambda f, o: Path("/dev/zero"))),
        Case("links/self-loop.png", "skipped:cannot stat", setup=_symlink("links/self-loop.png", lambda f, o: f / "links/self-loop.png")),
        Case("links/dangling.png", "skipped:cannot stat", setup=_symlink("links/dangling.png", lambda f, o: f / "links/nowhere.png")),
        Case("links/inside.png", "indexed", setup=_symlink("links/inside.png", lambda f, o: f / "odd/palette.png")),
        Case("links/loop-dir", "ignored", setup=_symlink("links/loop-dir", lambda f, o: f, is_dir=True)),
        Case("links/outside-dir", "ignored", setup=_symlink("links/outside-dir", lambda f, o: o, is_dir=True)),
        Case("special/fifo.png", "skipped:not a regular file", setup=_fifo("special/fifo.png")),
        Case("special/directory.png", "ignored", setup=_directory("special/directory.png")),
        Case("special/vanishes.png", "skipped:vanished", data=_encode(_picture((21, 9)), "PNG"), vanish=True,
             as_bytes="indexed"),
    ]
    return cases


def build(folder: Path, outside: Path, cases: list[Case] | None = None) -> list[Case]:
    """Write every case under ``folder`` (links may point into ``outside``); returns the cases."""
    cases = hostile_cases() if cases is None else cases
    folder.mkdir(parents=True, exist_ok=True)
    outside.mkdir(parents=True, exist_ok=True)
    for case in cases:
        (folder / case.name).parent.mkdir(parents=True, exist_ok=True)
        if case.data is not None:
            (folder / case.name).write_bytes(case.data)
        else:
            case.setup(folder, outside)
    return cases


def upload_cases() -> list[Case]:
    """The cases that are plain bytes: what a client can send to the service or the upload API."""
    return [case for case in hostile_cases() if case.data is not None]
