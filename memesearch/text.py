"""Unicode text folding shared by indexing and querying.

Text is never reduced to ASCII: folding only removes case and combining marks
(so "Café" matches "cafe" and "ÜBER" matches "über") and keeps every script.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata

_NOT_WORD = re.compile(r"[\W_]+", re.UNICODE)


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
