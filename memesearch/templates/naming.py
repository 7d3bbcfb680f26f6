"""A suggested name for a template group: the words its members' texts share.

Captions differ from variant to variant, but descriptions, tags and recurring caption
words tend to name the template ("drake", "distracted boyfriend"). A word counts once per
member; the suggestion is the words found in at least half of the members with text (and
in two or more), most shared first, at most four.
"""

from __future__ import annotations

import re
from collections import Counter

from memesearch.text import fold

_WORD = re.compile(r"[^\W\d_]{3,}")
#: Words too common in meme text and descriptions to name anything.
STOPWORDS = frozenset(
    "the and for you that this with when are was your have not but what all can just they his her him she "
    "from has one our out who get got how its why will about there their them then than like meme image "
    "picture text shows showing person people man woman top bottom caption".split()
)
MAX_WORDS = 4


def suggest_name(texts: list[str]) -> str | None:
    """``texts``: one string per member (OCR text, descriptions and tags joined)."""
    counts: Counter[str] = Counter()
    spelled: dict[str, str] = {}
    with_text = 0
    for text in texts:
        words = {}
        for word in _WORD.findall(text):
            key = fold(word)
            if key not in STOPWORDS:
                words.setdefault(key, word.lower())
        with_text += bool(words)
        counts.update(words.keys())
        for key, word in words.items():
            spelled.setdefault(key, word)
    needed = max(2, (with_text + 1) // 2)
    shared = [word for word, count in counts.most_common() if count >= needed][:MAX_WORDS]
    return " ".join(spelled[word] for word in shared) or None
