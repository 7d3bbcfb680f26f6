"""What to try when a search finds nothing: another mode, fewer words, no filters.

Shared by the web page and the CLI so both give the same advice.
"""

from __future__ import annotations

from dataclasses import dataclass

from memesearch.search.query import parse_query

_WHY = {
    "keyword": "looks for the exact words",
    "vector": "looks for the meaning and leaves out weak matches",
    "hybrid": "combines exact words and meaning",
}


@dataclass(frozen=True)
class Suggestion:
    label: str
    query: str
    mode: str


def suggestions(query: str, mode: str) -> list[Suggestion]:
    """Concrete next searches, most promising first (empty for an empty query)."""
    parsed = parse_query(query)
    if not parsed.has_text:
        return []
    found: list[Suggestion] = []
    for other in ("hybrid", "vector", "keyword"):
        if other != mode:
            found.append(Suggestion(f"Search in {other} mode ({_WHY[other]})", query, other))
    words = [f'"{phrase}"' for phrase in parsed.phrases] + parsed.words
    if len(words) > 1:
        # The longest words carry the most meaning; filters (tag:, folder:, ...) are kept.
        kept = sorted(words, key=len, reverse=True)[:max(1, len(words) // 2)]
        filters = [part for part in query.split() if ":" in part and part not in parsed.words]
        shorter = " ".join(sorted(kept, key=words.index) + filters)
        found.insert(1, Suggestion(f"Use fewer words: {shorter}", shorter, mode))
    if not parsed.filters.is_empty():
        found.append(Suggestion(f"Search without filters: {parsed.text}", parsed.text, mode))
    return found


def explain_mode(mode: str) -> str:
    return _WHY.get(mode, "")
