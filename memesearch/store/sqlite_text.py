"""SQLite keyword search: FTS5 word index + trigram substring index, and filters.

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
import time

from memesearch.store.models import Filters
from memesearch.text import filename_words, fold, spaceless

# Column weights for bm25(): user_text, description, ocr_text, tags, filename. The file
# name counts least: it finds "drake-hotline-bling.jpg" by "drake" without outranking text.
_BM25 = "bm25(meme_fts, 4.0, 2.0, 1.0, 3.0, 0.5)"
# Substring matching on very short queries mostly finds noise.
_MIN_TRIGRAM_CHARS = 6
_ENOUGH = 1  # i.e. only when word matching found nothing


def reindex(conn: sqlite3.Connection, meme_id: int, *, queue_embed: bool = True) -> None:
    """Rewrite the text index rows of one meme from its current fields and queue re-embedding."""
    row = conn.execute("SELECT user_description, ocr_text, status, path FROM memes WHERE id = ?", (meme_id,)).fetchone()
    remove(conn, meme_id)
    if row is None:
        return
    descriptions = " \n".join(r[0] for r in conn.execute("SELECT text FROM descriptions WHERE meme_id = ?", (meme_id,)))
    tags = " ".join(
        r[0] for r in conn.execute(
            "SELECT t.name FROM meme_tags mt JOIN tags t ON t.id = mt.tag_id WHERE mt.meme_id = ?", (meme_id,)
        )
    )
    user_text, ocr_text = row[0], row[1]
    conn.execute(
        "INSERT INTO meme_fts (rowid, user_text, description, ocr_text, tags, filename) VALUES (?, ?, ?, ?, ?, ?)",
        (meme_id, user_text, descriptions, ocr_text, tags, filename_words(row[3])),
    )
    folded = spaceless(" ".join((user_text, descriptions, ocr_text)))
    if folded:
        conn.execute("INSERT INTO meme_trigram (rowid, folded) VALUES (?, ?)", (meme_id, folded))
    if not queue_embed:
        return
    # The embedding input may have changed; the pipeline compares text hashes before recomputing.
    conn.execute(
        "INSERT INTO stages (meme_id, stage, status, updated_at) VALUES (?, 'embed', 'queued', strftime('%s','now')) "
        "ON CONFLICT (meme_id, stage) DO UPDATE SET status = 'queued'",
        (meme_id,),
    )


def rebuild_all(conn: sqlite3.Connection) -> int:
    """Refill the text index of every meme (after a schema change); embeddings are untouched."""
    ids = [row[0] for row in conn.execute("SELECT id FROM memes")]
    for meme_id in ids:
        reindex(conn, meme_id, queue_embed=False)
    return len(ids)


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
    # The whole query as one phrase: its words next to each other, in order.
    whole = _quote(fold(" ".join(phrases + words)))
    adjacent = ids(fts_sql, (whole, limit)) if len(terms) > 1 else []
    all_terms = ids(fts_sql, (" AND ".join(terms), limit)) if terms else []
    found = set(adjacent) | set(all_terms)

    # The trigram index finds text whose spaces OCR lost; it is the expensive query, so it
    # runs only when word matching found nothing. The same goes for any-word matching,
    # which rescues a misremembered word but must score every meme with a common word.
    needle = spaceless(" ".join(phrases + words))
    substring = []
    if len(needle) >= 3 and len(found) < _ENOUGH:
        substring = ids("SELECT rowid FROM meme_trigram WHERE meme_trigram MATCH ? ORDER BY rank LIMIT ?",
                        (_quote(needle), limit))
    any_term = []
    if len(terms) > 1 and len(found | set(substring)) < _ENOUGH:
        any_term = ids(fts_sql, (" OR ".join(terms), limit))

    # Whole-phrase substring hits are strong evidence, unless the query is so short that
    # substrings are mostly noise (scripts without spaces, such as Japanese, are short by
    # nature, so any 3+ characters count there).
    substring_first = len(needle) >= _MIN_TRIGRAM_CHARS or (len(needle) >= 3 and not needle.isascii())
    if substring_first:
        # Among substring hits, BM25 order (which weights the user's text highest) breaks ties.
        hits = set(substring)
        bm25_order = [i for i in all_terms + any_term if i in hits]
        ordered = adjacent + bm25_order + substring + all_terms + any_term
    else:
        ordered = adjacent + all_terms + any_term + substring
    # Missing and unreadable memes keep their text rows (they may come back) but are not
    # results. They are few, so filtering here is far cheaper than a per-row subquery.
    absent = {row[0] for row in conn.execute("SELECT id FROM memes WHERE status != 'ok'")}
    return [meme_id for meme_id in dict.fromkeys(ordered) if meme_id not in absent][:limit]


def filter_ids(conn: sqlite3.Connection, filters: Filters) -> set[int]:
    clauses: list[str] = []
    params: list = []
    if not filters.include_missing:
        clauses.append("m.status = 'ok'")
    for tag in filters.tags:
        clauses.append(
            "EXISTS (SELECT 1 FROM meme_tags mt JOIN tags t ON t.id = mt.tag_id WHERE mt.meme_id = m.id AND t.name = ?)"
        )
        params.append(tag)
    if filters.folders:
        # A folder filter matches a registered folder path or any path segment, case-insensitively.
        ors = []
        for folder in filters.folders:
            ors.append("(m.path LIKE ? ESCAPE '\\' OR m.path LIKE ? ESCAPE '\\')")
            escaped = folder.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_").strip("/")
            params.extend([f"%/{escaped}/%", f"{escaped}/%"])
        clauses.append("(" + " OR ".join(ors) + ")")
    if filters.formats:
        clauses.append(f"lower(m.format) IN ({','.join('?' * len(filters.formats))})")
        params.extend(f.lower().replace("jpg", "jpeg") for f in filters.formats)
    if filters.described is not None:
        has = "(m.user_description != '' OR EXISTS (SELECT 1 FROM descriptions d WHERE d.meme_id = m.id))"
        clauses.append(has if filters.described else f"NOT {has}")
    where = " AND ".join(clauses) or "1"
    return {row[0] for row in conn.execute(f"SELECT m.id FROM memes m WHERE {where}", params)}


def apply_payload(conn: sqlite3.Connection, meme_id: int, record: dict, *, fresh: bool = False) -> None:
    """Merge an export record (``transfer``) into a meme: fill empty texts, add descriptions and tags.

    ``fresh``: the meme is being created (insert_file), so the record's OCR wins over the one shared
    from a same-bytes meme (a record is that file's own), and insert_file refreshes the search index.
    """
    conn.execute("UPDATE memes SET user_description = ? WHERE id = ? AND user_description = ''",
                 (record.get("user_description") or "", meme_id))
    if record.get("ocr_engine"):
        conn.execute("UPDATE memes SET ocr_text = ?, ocr_engine = ? WHERE id = ?" + ("" if fresh else " AND ocr_engine IS NULL"),
                     (record.get("ocr_text") or "", record["ocr_engine"], meme_id))
        conn.execute(
            "INSERT INTO stages (meme_id, stage, status, updated_at) VALUES (?, 'ocr', 'done', ?) "
            "ON CONFLICT (meme_id, stage) DO UPDATE SET status = 'done'",
            (meme_id, time.time()),
        )
    for d in record.get("descriptions", []):
        conn.execute(
            "INSERT OR IGNORE INTO descriptions (meme_id, model_id, text, backend, dtype, revision, ms, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (meme_id, d["model_id"], d["text"], d.get("backend") or "", d.get("dtype") or "", d.get("revision") or "",
             d.get("ms"), d.get("created_at") or time.time()),
        )
    for name in record.get("tags", []):
        conn.execute("INSERT OR IGNORE INTO tags (name) VALUES (?)", (name,))
        conn.execute("INSERT OR IGNORE INTO meme_tags (meme_id, tag_id) SELECT ?, id FROM tags WHERE name = ?", (meme_id, name))
    if not fresh:  # insert_file reindexes the new meme itself
        reindex(conn, meme_id)
