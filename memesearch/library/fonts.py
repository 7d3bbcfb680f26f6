"""Bold fonts for rendering sample memes, with a fallback that works everywhere.

Debian's font packages (fonts-dejavu-core, fonts-liberation, fonts-freefont-ttf,
fonts-noto-core) give us several real bold faces; on a bare machine we fall back
to Pillow's bundled scalable font so rendering never fails for lack of fonts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from PIL import ImageFont

DEFAULT_FONT_ROOTS: tuple[Path, ...] = (
    Path("/usr/share/fonts/truetype"),
    Path("/usr/share/fonts/TTF"),  # Arch/Fedora-style flat layout
    Path("/usr/local/share/fonts"),
)

#: Bold, meme-friendly faces in order of preference: (name, file name).
#: File names are unique enough to be found anywhere below a font root.
BOLD_FONT_FILES: tuple[tuple[str, str], ...] = (
    ("dejavu-sans-bold", "DejaVuSans-Bold.ttf"),
    ("liberation-sans-bold", "LiberationSans-Bold.ttf"),
    ("freesans-bold", "FreeSansBold.ttf"),
    ("noto-sans-bold", "NotoSans-Bold.ttf"),
    ("dejavu-sans-condensed-bold", "DejaVuSansCondensed-Bold.ttf"),
    ("liberation-sans-narrow-bold", "LiberationSansNarrow-Bold.ttf"),
    ("noto-serif-bold", "NotoSerif-Bold.ttf"),
    ("liberation-serif-bold", "LiberationSerif-Bold.ttf"),
)

PILLOW_DEFAULT = "pillow-default"


@dataclass(frozen=True)
class FontChoice:
    """A named font; ``path`` is None for Pillow's bundled default font."""

    name: str
    path: Path | None

    def load(self, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
        return load_font(self, size)


def find_bold_fonts(roots: Sequence[Path] = DEFAULT_FONT_ROOTS) -> list[FontChoice]:
    """All known bold fonts installed below ``roots``; Pillow's default when none are."""
    found: list[FontChoice] = []
    for name, file_name in BOLD_FONT_FILES:
        path = _find_file(tuple(roots), file_name)
        if path is not None:
            found.append(FontChoice(name, path))
    return found or [FontChoice(PILLOW_DEFAULT, None)]


@lru_cache(maxsize=64)
def _find_file(roots: tuple[Path, ...], file_name: str) -> Path | None:
    for root in roots:
        if not root.is_dir():
            continue
        # Sorted so that duplicates in several folders resolve the same way every run.
        for candidate in sorted(root.rglob(file_name)):
            if candidate.is_file():
                return candidate
    return None


@lru_cache(maxsize=256)
def load_font(choice: FontChoice, size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    """Open ``choice`` at ``size`` pixels (cached: rendering asks for the same sizes often)."""
    if choice.path is not None:
        try:
            return ImageFont.truetype(str(choice.path), size)
        except OSError:
            pass  # unreadable file: the bundled font still renders something sensible
    # Scalable when Pillow has FreeType (the usual case); a fixed bitmap font otherwise.
    return ImageFont.load_default(size=size)
