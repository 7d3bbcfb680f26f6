"""Text from files and users, made safe to print on a terminal.

File names and OCR text can hold terminal escape codes (``\\x1b[2J`` clears the screen,
OSC sequences set the window title or write links), bidi overrides that make a name read
backwards, and bytes that are not UTF-8 (Python keeps them as lone surrogates). ``shown``
writes all of them as visible escapes, and escapes Rich markup, so a name is printed as
exactly one harmless line. JSON output needs none of this: ``json.dumps`` escapes controls.
"""

from __future__ import annotations

import unicodedata

from rich.markup import escape as escape_markup

# Format characters that reorder text; other format characters (ZWJ in emoji) stay.
_BIDI_CONTROLS = set("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069\u200e\u200f\u061c")


def _escaped(char: str) -> str:
    code = ord(char)
    if 0xDC80 <= code <= 0xDCFF:  # a byte that was not UTF-8 (surrogateescape): show the byte
        return f"\\x{code - 0xDC00:02x}"
    if code <= 0xFF:
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(char, f"\\x{code:02x}")
    return f"\\u{code:04x}"


def printable(value: object) -> str:
    """``value`` as text with control, bidi and undecodable characters written as escapes."""
    text = str(value)
    if text.isprintable():  # the common case: nothing to do
        return text
    out = []
    for char in text:
        category = unicodedata.category(char)
        if category in ("Cc", "Cs", "Zl", "Zp") or char in _BIDI_CONTROLS:
            out.append(_escaped(char))
        else:
            out.append(char)
    return "".join(out)


def shown(value: object) -> str:
    """``printable`` plus Rich markup escaped: for text inside ``console.print`` markup strings."""
    return escape_markup(printable(value))
