"""Search rows, filters and imported records: the text side of the store, written once.

What a meme's search row holds is gathered here (its user text, tags, generated
descriptions, OCR text and file name) and handed to the dialect, which writes it
into its own full-text index (``sqlite_text`` or ``postgres_text``). Filters and
the merging of export records are plain SQL both databases run.
"""

from __future__ import annotations

import time

from memesearch.store.models import Filters

#: Substring matching on very short queries mostly finds noise.
MIN_TRIGRAM_CHARS = 6
#: Substring and any-word matching run only when word matching found fewer than this.
ENOUGH = 1


def reindex(dialect, conn, meme_id: int, *, queue_embed: bool = True) -> None:
    """Rewrite the search row of one meme from its current fields and queue re-embedding."""
    q = dialect.sql
    row = conn.execute(q("SELECT user_description, ocr_text, path FROM memes WHERE id = ?"), (meme_id,)).fetchone()
    if row is None:
        dialect.remove_text(conn, meme_id)
        return
    descriptions = " \n".join(
        r["text"] for r in conn.execute(q("SELECT text FROM descriptions WHERE meme_id = ? ORDER BY model_id"), (meme_id,))
    )
    tags = " ".join(r["name"] for r in conn.execute(
        q("SELECT t.name FROM meme_tags mt JOIN tags t ON t.id = mt.tag_id WHERE mt.meme_id = ? ORDER BY t.name"),
        (meme_id,),
    ))
    dialect.write_text(conn, meme_id, row["user_description"], tags, descriptions, row["ocr_text"], row["path"])
    if queue_embed:
        # The embedding input may have changed; the pipeline compares text hashes before recomputing.
        conn.execute(q(
            "INSERT INTO stages (meme_id, stage, status, updated_at) VALUES (?, 'embed', 'queued', ?) "
            "ON CONFLICT (meme_id, stage) DO UPDATE SET status = 'queued'"), (meme_id, time.time()))


def rebuild_all(dialect, conn) -> int:
    """Rewrite the search row of every meme (after a schema change); embeddings are untouched."""
    ids = [row["id"] for row in conn.execute("SELECT id FROM memes ORDER BY id")]
    for meme_id in ids:
        reindex(dialect, conn, meme_id, queue_embed=False)
    return len(ids)


def ranked_tiers(needle: str, adjacent: list[int], all_terms: list[int], any_term: list[int],
                 substring: list[int]) -> list[int]:
    """One keyword ranking from the tiers both full-text indexes compute (``sqlite_text`` docstring).

    Whole-phrase substring hits are strong evidence, unless the query is so short that
    substrings are mostly noise (scripts without spaces, such as Japanese, are short by
    nature, so any 3+ characters count there)."""
    substring_first = len(needle) >= MIN_TRIGRAM_CHARS or (len(needle) >= 3 and not needle.isascii())
    if substring_first:
        # Among substring hits, the word ranking (which weights the user's text highest) breaks ties.
        hits = set(substring)
        ordered = adjacent + [i for i in all_terms + any_term if i in hits] + substring + all_terms + any_term
    else:
        ordered = adjacent + all_terms + any_term + substring
    return list(dict.fromkeys(ordered))


def filter_ids(dialect, conn, filters: Filters) -> set[int]:
    """Ids of memes passing ``filters`` (present memes only unless include_missing)."""
    clauses: list[str] = []
    params: list = []
    if not filters.include_missing:
        clauses.append("m.status = 'ok'")
    for tag in filters.tags:
        clauses.append("EXISTS (SELECT 1 FROM meme_tags mt JOIN tags t ON t.id = mt.tag_id "
                       "WHERE mt.meme_id = m.id AND lower(t.name) = lower(?))")
        params.append(tag)
    if filters.folders:
        # A folder filter matches a registered folder path or any path segment, case-insensitively.
        ors = []
        for folder in filters.folders:
            ors.append("(lower(m.path) LIKE lower(?) ESCAPE '\\' OR lower(m.path) LIKE lower(?) ESCAPE '\\')")
            escaped = folder.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_").strip("/")
            params.extend([f"%/{escaped}/%", f"{escaped}/%"])
        clauses.append("(" + " OR ".join(ors) + ")")
    if filters.formats:
        clauses.append(dialect.in_list("lower(m.format)", "text"))
        params.append(dialect.list_param(f.lower().replace("jpg", "jpeg") for f in filters.formats))
    if filters.described is not None:
        has = "(m.user_description != '' OR EXISTS (SELECT 1 FROM descriptions d WHERE d.meme_id = m.id))"
        clauses.append(has if filters.described else f"NOT {has}")
    where = " AND ".join(clauses) or "TRUE"
    return {row["id"] for row in conn.execute(dialect.sql(f"SELECT m.id FROM memes m WHERE {where}"), params)}


def apply_payload(dialect, conn, meme_id: int, record: dict, *, fresh: bool = False) -> None:
    """Merge an export record (``transfer``) into a meme: fill empty texts, add descriptions and tags.

    ``fresh``: the meme is being created (insert_file), so the record's OCR wins over the one shared
    from a same-bytes meme (a record is that file's own), and insert_file refreshes the search index.
    """
    q = dialect.sql
    conn.execute(q("UPDATE memes SET user_description = ? WHERE id = ? AND user_description = ''"),
                 (record.get("user_description") or "", meme_id))
    if record.get("ocr_engine"):
        conn.execute(q("UPDATE memes SET ocr_text = ?, ocr_engine = ? WHERE id = ?" + ("" if fresh else " AND ocr_engine IS NULL")),
                     (record.get("ocr_text") or "", record["ocr_engine"], meme_id))
        conn.execute(q("INSERT INTO stages (meme_id, stage, status, updated_at) VALUES (?, 'ocr', 'done', ?) "
                       "ON CONFLICT (meme_id, stage) DO UPDATE SET status = 'done'"), (meme_id, time.time()))
    for d in record.get("descriptions", []):
        conn.execute(q(
            "INSERT INTO descriptions (meme_id, model_id, text, backend, dtype, revision, ms, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING"),
            (meme_id, d["model_id"], d["text"], d.get("backend") or "", d.get("dtype") or "", d.get("revision") or "",
             d.get("ms"), d.get("created_at") or time.time()),
        )
    for name in record.get("tags", []):
        conn.execute(q("INSERT INTO tags (name) VALUES (?) ON CONFLICT DO NOTHING"), (name,))
        conn.execute(q("INSERT INTO meme_tags (meme_id, tag_id) SELECT ?, id FROM tags WHERE lower(name) = lower(?) "
                       "ON CONFLICT DO NOTHING"), (meme_id, name))
    if not fresh:  # insert_file reindexes the new meme itself
        reindex(dialect, conn, meme_id)
