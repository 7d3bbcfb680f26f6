"""SQLite keyword search: FTS5 word index + trigram substring index (the SQLite dialect's text search).

Ranking of the keyword list, best first:
1. memes containing the query's words as one phrase (adjacent, in order), by BM25;
2. memes whose folded, space-less text contains the whole space-less query
   (so OCR that lost its spaces still matches a remembered phrase);
3. memes containing every word and phrase (FTS5 AND), by BM25;
4. memes containing any word (FTS5 OR), by BM25.
2 and 4 are the expensive queries (they score every meme sharing a common trigram
or word) and run only when 1 and 3 found nothing; hybrid search adds the vector list.
BM25 weights favour the user's own description, then tags, then generated
descriptions, then OCR text: "user text wins ties".
"""

from __future__ import annotations

import sqlite3

from memesearch.store.sql_text import ENOUGH, ranked_tiers
from memesearch.text import filename_words, fold, spaceless

# Column weights for bm25(): user_text, description, ocr_text, tags, filename. The file
# name counts least: it finds "drake-hotline-bling.jpg" by "drake" without outranking text.
_BM25 = "bm25(meme_fts, 4.0, 2.0, 1.0, 3.0, 0.5)"


def write(conn: sqlite3.Connection, meme_id: int, user_text: str, tags: str, descriptions: str,
          ocr_text: str, path: str) -> None:
    """Replace the text index rows of one meme (``sql_text.reindex`` gathers the fields)."""
    remove(conn, meme_id)
    conn.execute(
        "INSERT INTO meme_fts (rowid, user_text, description, ocr_text, tags, filename) VALUES (?, ?, ?, ?, ?, ?)",
        (meme_id, user_text, descriptions, ocr_text, tags, filename_words(path)),
    )
    folded = spaceless(" ".join((user_text, descriptions, ocr_text)))
    if folded:
        conn.execute("INSERT INTO meme_trigram (rowid, folded) VALUES (?, ?)", (meme_id, folded))


def remove(conn: sqlite3.Connection, meme_id: int) -> None:
    conn.execute("DELETE FROM meme_fts WHERE rowid = ?", (meme_id,))
    conn.execute("DELETE FROM meme_trigram WHERE rowid = ?", (meme_id,))


def _quote(term: str) -> str:
    """An FTS5 string literal: the term is matched as words, never parsed as syntax."""
    # FTS5 reads the query as a C string: a NUL would end it mid-literal ("unterminated string").
    return '"' + term.replace("\x00", "").replace('"', '""') + '"'


def search(conn: sqlite3.Connection, words: list[str], phrases: list[str], limit: int) -> list[int]:
    """Meme ids for a keyword query, best first (see module docstring)."""

    def ids(sql: str, params: tuple) -> list[int]:
        return [row[0] for row in conn.execute(sql, params)]

    terms = [t for t in ([_quote(fold(p)) for p in phrases] + [_quote(fold(w)) for w in words]) if t != '""']
    fts_sql = f"SELECT rowid FROM meme_fts WHERE meme_fts MATCH ? ORDER BY {_BM25} LIMIT ?"
    all_terms = ids(fts_sql, (" AND ".join(terms), limit)) if terms else []
    # The whole query as one phrase: its words next to each other, in order. Those memes are
    # among the ones holding every term, so with at most one of those the phrase query could
    # only repeat it (and at 1M memes it costs as much as the AND query: common words' IDF).
    whole = _quote(fold(" ".join(phrases + words)))
    adjacent = ids(fts_sql, (whole, limit)) if len(terms) > 1 and len(all_terms) > 1 else []
    found = set(adjacent) | set(all_terms)

    # The trigram index finds text whose spaces OCR lost; it is the expensive query, so it
    # runs only when word matching found nothing. The same goes for any-word matching,
    # which rescues a misremembered word but must score every meme with a common word.
    needle = spaceless(" ".join(phrases + words))
    substring = []
    if len(needle) >= 3 and len(found) < ENOUGH:
        substring = ids("SELECT rowid FROM meme_trigram WHERE meme_trigram MATCH ? ORDER BY rank LIMIT ?",
                        (_quote(needle), limit))
    any_term = []
    if len(terms) > 1 and len(found | set(substring)) < ENOUGH:
        any_term = ids(fts_sql, (" OR ".join(terms), limit))

    # Missing and unreadable memes keep their text rows (they may come back) but are not
    # results. They are few, so filtering here is far cheaper than a per-row subquery. Named, not
    # "!= 'ok'": the status index finds the few, where != reads all of it (80 ms at 1M memes).
    absent = {row[0] for row in conn.execute("SELECT id FROM memes WHERE status IN ('missing', 'error')")}
    ordered = ranked_tiers(needle, adjacent, all_terms, any_term, substring)
    return [meme_id for meme_id in ordered if meme_id not in absent][:limit]
