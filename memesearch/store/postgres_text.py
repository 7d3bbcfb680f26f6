"""PostgreSQL keyword search: weighted tsvector words + pg_trgm substrings (the PostgreSQL dialect's text search).

The ranking rules are those of ``sqlite_text`` (read its docstring): the whole
query as one phrase first, then space-less substring hits (for queries long
enough to be specific), then memes with every word, then memes with any word;
substring and any-word matching run only when word matching found nothing. The
user's own text weighs most, then tags, then generated descriptions, then OCR
and the file name's words.

Words are cut and folded in Python, not by a PostgreSQL text search config:
``fold`` (NFKC, casefold, no combining marks) followed by splitting on
anything that is not a letter or digit is exactly what SQLite's
``unicode61 remove_diacritics`` tokenizer does, for every script, and it does
not depend on the server's locale or on the ``unaccent`` extension. The
tsvector is then written as a literal (``'word':position+weight``) - what the
``simple`` config would produce from already-folded words - and queries are
built from the same tokens, so phrases match by position like FTS5 phrases.

Two differences from SQLite, both for bounded latency in big libraries (the
small libraries of the contract and parity tests behave exactly like SQLite):
ts_rank has no IDF, so within the any-word tier rare words do not outweigh
common ones; instead, in libraries over _BIG_LIBRARY memes, words found in more
than _COMMON_SHARE of them (read from the planner's statistics) do not by
themselves make a meme an any-word hit, and each tier ranks at most
_MAX_RANKED matching rows.
"""

from __future__ import annotations

import re

from memesearch.store.sql_text import ENOUGH, ranked_tiers
from memesearch.text import filename_words, fold, spaceless

# ts_rank weights in {D, C, B, A} order: file name words 0.1, OCR 0.33, descriptions 0.66,
# user text and tags 1.0. tsvector has only four weight classes, so the user's text and tags
# share A; the order is the SQLite store's BM25 column order (user, tags > descriptions >
# OCR > file name).
_RANK_WEIGHTS = "'{0.1, 0.33, 0.66, 1.0}'"
# Normalisation 1: divide by 1 + log(length), so short precise texts beat long ones (like BM25).
_RANK = f"ts_rank({_RANK_WEIGHTS}, s.doc, q.query, 1)"
# Keyword work stays bounded in big libraries: at most this many matches are ranked per
# tier, and words in more than _COMMON_SHARE of the memes alone do not make an any-word hit.
_MAX_RANKED = 20_000
_BIG_LIBRARY = 50_000
_COMMON_SHARE = 0.05
_WORD = re.compile(r"[^\W_]+", re.UNICODE)
# PostgreSQL refuses lexemes over 2 KB; words that long are never searched for.
_MAX_WORD_CHARS = 255


def words(text: str) -> list[str]:
    """The index words of ``text``: folded runs of letters and digits (unicode61's rule)."""
    return [w for w in _WORD.findall(fold(text)) if len(w) <= _MAX_WORD_CHARS]


def _lexeme(word: str) -> str:
    return "'" + word.replace("\\", "\\\\").replace("'", "''") + "'"


def document(user_text: str, tags: str, descriptions: str, ocr_text: str, filename: str = "") -> str:
    """A tsvector literal of the fields, weighted A-D (see _RANK_WEIGHTS); a gap keeps phrases
    inside one field."""
    entries: list[str] = []
    position = 1
    for text, weight in ((user_text, "A"), (tags, "A"), (descriptions, "B"), (ocr_text, "C"), (filename, "D")):
        for word in words(text):
            entries.append(f"{_lexeme(word)}:{min(position, 16383)}{weight}")
            position += 1
        position += 2
    return " ".join(entries)


def _phrase_of(tokens: list[str]) -> str:
    """A tsquery matching ``tokens`` as consecutive words (one token: the word itself)."""
    return "(" + " <-> ".join(_lexeme(t) for t in tokens) + ")"


def _common_words(conn) -> set[str]:
    """Words in more than _COMMON_SHARE of the memes, from the planner's statistics (ANALYZE
    keeps them fresh, reading them costs nothing). Small libraries have none: exact behaviour."""
    row = conn.execute(
        "SELECT c.reltuples, s.most_common_elems::text::text[] AS elems, s.most_common_elem_freqs AS freqs "
        "FROM pg_class c LEFT JOIN pg_stats s ON s.schemaname = current_schema() AND s.tablename = 'meme_search' "
        "AND s.attname = 'doc' WHERE c.oid = 'meme_search'::regclass"
    ).fetchone()
    if row is None or row["reltuples"] < _BIG_LIBRARY or not row["elems"]:
        return set()
    return {word for word, share in zip(row["elems"], row["freqs"]) if share > _COMMON_SHARE}


def search_row(meme_id: int, user_text: str, tags: str, descriptions: str, ocr_text: str,
               path: str = "") -> tuple[int, str, str]:
    """(meme_id, tsvector literal, folded space-less text): one row of ``meme_search``."""
    doc = document(user_text, tags, descriptions, ocr_text, filename_words(path))
    return meme_id, doc, spaceless(" ".join((user_text, descriptions, ocr_text)))


def write_rows(conn, rows: list[tuple]) -> None:
    """Upsert search rows from (meme_id, user_text, tags, descriptions, ocr_text[, path])."""
    conn.cursor().executemany(
        "INSERT INTO meme_search (meme_id, doc, folded) VALUES (%s, %s::tsvector, %s) "
        "ON CONFLICT (meme_id) DO UPDATE SET doc = excluded.doc, folded = excluded.folded",
        [search_row(*row) for row in rows],
    )


def search(conn, words_: list[str], phrases: list[str], limit: int) -> list[int]:
    """Meme ids for a keyword query, best first (see module docstring)."""
    term_tokens = [tokens for tokens in (words(t) for t in phrases + words_) if tokens]
    terms = [_phrase_of(tokens) for tokens in term_tokens]

    def ranked(match: str, rank_by: str) -> list[int]:
        # Rank at most _MAX_RANKED matches: a word found in half of a million memes would
        # otherwise make every query rank half a million rows (see _common_words).
        rows = conn.execute(
            f"SELECT s.meme_id FROM (SELECT meme_id, doc FROM meme_search WHERE doc @@ %s::tsquery LIMIT {_MAX_RANKED}) s "
            f"JOIN memes m ON m.id = s.meme_id, (SELECT %s::tsquery AS query) q WHERE m.status = 'ok' "
            f"ORDER BY {_RANK} DESC, s.meme_id LIMIT %s",
            (match, rank_by, limit),
        )
        return [row["meme_id"] for row in rows]

    # The whole query as one phrase: its words next to each other, in order.
    whole = words(" ".join(phrases + words_))
    adjacent = ranked(_phrase_of(whole), _phrase_of(whole)) if len(terms) > 1 else []
    all_terms = ranked(" & ".join(terms), " & ".join(terms)) if terms else []
    found = set(adjacent) | set(all_terms)

    # Substring (trigram) and any-word matching are the expensive queries: like SQLite, they
    # run only when word matching found nothing.
    needle = spaceless(" ".join(phrases + words_))
    substring: list[int] = []
    if len(needle) >= 3 and len(found) < ENOUGH:
        # The needle holds letters and digits only, so it needs no LIKE escaping.
        rows = conn.execute(
            "SELECT s.meme_id FROM meme_search s JOIN memes m ON m.id = s.meme_id "
            "WHERE s.folded LIKE %s AND m.status = 'ok' ORDER BY length(s.folded), s.meme_id LIMIT %s",
            (f"%{needle}%", limit),
        )
        substring = [row["meme_id"] for row in rows]
    any_term: list[int] = []
    if len(terms) > 1 and len(found | set(substring)) < ENOUGH:
        # In big libraries, a meme sharing only very common words with the query is not a
        # keyword hit (BM25 would give those words almost no weight anyway).
        common = _common_words(conn)
        rare = [t for t, tokens in zip(terms, term_tokens) if not all(token in common for token in tokens)]
        any_term = ranked(" | ".join(rare or terms), " | ".join(terms))

    return ranked_tiers(needle, adjacent, all_terms, any_term, substring)[:limit]
