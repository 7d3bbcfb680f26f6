"""Unicode text folding shared by indexing and querying.

Text is never reduced to ASCII: folding only removes case and combining marks
(so "Café" matches "cafe" and "ÜBER" matches "über") and keeps every script.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)
# C0 control characters other than tab and newline: never meaningful in a caption, and
# PostgreSQL rejects NUL in text, so both stores drop them at the boundary.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def fold(text: str) -> str:
    """Case- and diacritic-insensitive form of ``text`` (NFKC, casefold, no combining marks)."""
    decomposed = unicodedata.normalize("NFKD", unicodedata.normalize("NFKC", text).casefold())
    stripped = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return unicodedata.normalize("NFC", stripped)


def spaceless(text: str) -> str:
    """Folded text with spaces and punctuation removed: the trigram index's form."""
    return _NOT_WORD.sub("", fold(text))


def content_hash(text: str) -> str:
    """Stable hash of a text, stored next to the vector made from it."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def clean_text(text: str) -> str:
    """Text as stored: control characters (NUL included) removed, everything else kept."""
    return _CONTROL.sub("", text)


#: Longest tag name; long enough for any real tag, short enough for a chip.
MAX_TAG_CHARS = 50


def clean_tag(name: str) -> str:
    """A tag name as stored: trimmed, inner whitespace runs collapsed to one space, 1-50 characters,
    no control characters. The one rule for tags from the CLI, the JSON API and the web forms."""
    from memesearch.errors import InvalidInputError

    if not isinstance(name, str):
        raise InvalidInputError("a tag name must be text")
    if any(unicodedata.category(ch) == "Cc" for ch in name.strip()):
        raise InvalidInputError(f"invalid tag name {name!r}: control characters (tabs, newlines, ...) are not allowed",
                                hint="use letters, digits, spaces and punctuation only")
    cleaned = " ".join(name.split())
    if not cleaned:
        raise InvalidInputError("a tag name cannot be empty", hint="give the tag at least one visible character")
    if len(cleaned) > MAX_TAG_CHARS:
        raise InvalidInputError(f"tag name too long ({len(cleaned)} characters); at most {MAX_TAG_CHARS} are allowed",
                                hint=f"shorten it: {cleaned[:MAX_TAG_CHARS]!r}")
    return cleaned


# Separators inside a file name; further boundaries are found by _split_humps.
_NAME_SEPARATORS = re.compile(r"[\W_]+", re.UNICODE)


def _split_humps(chunk: str) -> list[str]:
    """Cut between letters and digits and at camelCase humps, in any script with case:
    "DrakeHotlineBling2" -> Drake Hotline Bling 2, "HTMLParser" -> HTML Parser."""
    words: list[str] = []
    start = 0
    for i in range(1, len(chunk)):
        before, here = chunk[i - 1], chunk[i]
        after = chunk[i + 1] if i + 1 < len(chunk) else ""
        if (
            before.isdigit() != here.isdigit()
            or (before.islower() and here.isupper())
            or (before.isupper() and here.isupper() and after.islower())
        ):
            words.append(chunk[start:i])
            start = i
    words.append(chunk[start:])
    return [word for word in words if word]


def filename_words(path: str) -> str:
    """The words of a file's name, without folder or extension, for keyword search:
    ``drake-hotline-bling.jpg`` -> "drake hotline bling"; split on ``-_.`` (and other
    separators), between letters and digits, and at camelCase boundaries."""
    name = re.split(r"[\\/]", path)[-1]
    stem = name.rsplit(".", 1)[0] if "." in name.lstrip(".") else name
    words: list[str] = []
    for chunk in _NAME_SEPARATORS.split(stem):
        words.extend(_split_humps(chunk))
    return " ".join(words)
