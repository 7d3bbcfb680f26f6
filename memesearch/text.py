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


def clean_tag(name: str) -> str:
    """A tag name: whitespace collapsed, 1-64 characters."""
    from memesearch.errors import InvalidInputError

    cleaned = " ".join(clean_text(name).split())
    if not cleaned or len(cleaned) > 64:
        raise InvalidInputError(f"invalid tag name {name!r}: use 1-64 characters")
    return cleaned
