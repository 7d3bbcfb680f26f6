"""The fixed palette of tag colours.

Colours are stored by name, never as free CSS: the web app maps each name to a
light and a dark shade (``static/care.css``), so a stored value can never inject
style and every colour stays readable in both themes.
"""

from __future__ import annotations

from memesearch.errors import InvalidInputError

TAG_COLORS = ("red", "orange", "yellow", "green", "teal", "blue", "purple", "pink", "gray")


def clean_color(value: str | None) -> str | None:
    """A palette name, or None for "no colour" (None or an empty string)."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if not isinstance(value, str) or value.strip().lower() not in TAG_COLORS:
        raise InvalidInputError(f"unknown tag colour {value!r}; choose one of {', '.join(TAG_COLORS)} (or none)")
    return value.strip().lower()
