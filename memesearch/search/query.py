"""The query language: plain words, "quoted phrases" and filters.

    drake "no thanks" tag:reaction folder:work format:gif is:described

Filters: ``tag:NAME``, ``folder:NAME``, ``format:EXT``, ``is:described`` /
``is:undescribed``, ``template:GROUP_ID`` (a template group's memes), ``same:MEME_ID``
(memes made from the same picture as that meme). Values may be quoted (``tag:"hot take"``). Anything that is
not a recognised filter is searched as text, so typing ``re:zero`` just works.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from memesearch.errors import InvalidInputError
from memesearch.store.models import Filters

_TOKEN = re.compile(r'(?P<key>[A-Za-z]+):(?:"(?P<qvalue>[^"]*)"?|(?P<value>\S+))|"(?P<phrase>[^"]*)"?|(?P<word>\S+)')
_FILTER_KEYS = {"tag", "folder", "format", "is", "template", "same"}
#: Filter values one query may hold: each becomes a clause, and SQLite refuses very deep expressions.
MAX_FILTERS = 100


@dataclass
class ParsedQuery:
    words: list[str] = field(default_factory=list)
    phrases: list[str] = field(default_factory=list)
    filters: Filters = field(default_factory=Filters)

    @property
    def text(self) -> str:
        """The free text, for the embedding model."""
        return " ".join(self.phrases + self.words)

    @property
    def has_text(self) -> bool:
        return bool(self.text.strip())


def parse_query(query: str) -> ParsedQuery:
    parsed = ParsedQuery()
    for match in _TOKEN.finditer(query):
        key = (match.group("key") or "").lower()
        value = match.group("qvalue") if match.group("qvalue") is not None else match.group("value")
        if key in _FILTER_KEYS and value and _apply_filter(parsed.filters, key, value.strip()):
            continue
        if key:
            parsed.words.append(match.group(0))
        elif match.group("phrase") is not None:
            if match.group("phrase").strip():
                parsed.phrases.append(" ".join(match.group("phrase").split()))
        else:
            parsed.words.append(match.group("word"))
    filters = parsed.filters
    count = sum(map(len, (filters.tags, filters.folders, filters.formats, filters.templates, filters.same)))
    if count > MAX_FILTERS:
        raise InvalidInputError(f"the query has {count} tag:, folder:, format:, template: and same: filters; "
                                f"at most {MAX_FILTERS} are accepted")
    return parsed


def _apply_filter(filters: Filters, key: str, value: str) -> bool:
    """Record a filter; False when the value is not one we understand (then it is searched as text)."""
    if key == "tag":
        filters.tags.append(value)
    elif key == "folder":
        filters.folders.append(value)
    elif key == "format":
        filters.formats.append(value.lower().lstrip("."))
    elif key == "is" and value.lower() in ("described", "undescribed"):
        filters.described = value.lower() == "described"
    elif key in ("template", "same") and value.isascii() and value.isdigit() and len(value) <= 18:
        (filters.templates if key == "template" else filters.same).append(int(value))
    else:
        return False
    return True
