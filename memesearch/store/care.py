"""Library care, shared by both stores: tag rename/merge/delete/colour/cleanup and removing memes.

A mixin of SqlStore (both databases). The SQL is written once with ``?``
placeholders and portable statements; the store supplies its dialect's
placeholder (``_sql``) and how it refreshes or drops a meme's search row and
bumps the vector version. Tag names match case-insensitively (``lower(name)``, the same
rule as both stores' unique index).

Removing a meme deletes its row (texts, tags, vectors and stages go with it)
and, for files the user still has on disk, records the path in
``excluded_paths`` so a rescan does not bring it straight back. The file itself
is never touched here (``library/removal.py`` decides about the app's own uploads).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from memesearch.errors import InvalidInputError, NotFoundError
from memesearch.library.tag_colors import clean_color
from memesearch.store.models import Tag
from memesearch.text import clean_tag

_INT64_MIN, _INT64_MAX = -(2**63), 2**63 - 1


class LibraryCareMixin:
    # Supplied by the store (sql_store.SqlStore).
    def _sql(self, statement: str) -> str: raise NotImplementedError
    def _reindex_meme(self, conn, meme_id: int) -> None: raise NotImplementedError
    def _unindex_meme(self, conn, meme_id: int) -> None: raise NotImplementedError
    def _bump_vectors(self, conn) -> None: raise NotImplementedError

    def _tag_id(self, conn, name: str) -> int | None:
        row = conn.execute(self._sql("SELECT id FROM tags WHERE lower(name) = lower(?)"), (name.strip(),)).fetchone()
        return row["id"] if row else None

    def _require_tag(self, conn, name: str) -> int:
        tag_id = self._tag_id(conn, name)
        if tag_id is None:
            raise NotFoundError(f"no tag named {name.strip()!r}", hint="memesearch tags lists every tag")
        return tag_id

    def _memes_with_tag(self, conn, tag_id: int) -> list[int]:
        rows = conn.execute(self._sql("SELECT meme_id FROM meme_tags WHERE tag_id = ?"), (tag_id,)).fetchall()
        return [row["meme_id"] for row in rows]

    # -- tags ------------------------------------------------------------------------
    def list_tag_details(self, *, used_only: bool = False) -> list[Tag]:
        """Every tag with its meme count and colour, by name; ``used_only`` drops tags no meme carries."""
        having = " HAVING COUNT(mt.meme_id) > 0" if used_only else ""
        rows = self.query(
            "SELECT t.name, t.color, COUNT(mt.meme_id) AS n FROM tags t LEFT JOIN meme_tags mt ON mt.tag_id = t.id "
            f"GROUP BY t.id, t.name, t.color{having} ORDER BY lower(t.name)"
        )
        return [Tag(name=row["name"], count=int(row["n"]), color=row["color"]) for row in rows]

    def tag_colors(self) -> dict[str, str]:
        """Lower-cased tag name -> colour, for the tags that have one."""
        rows = self.query("SELECT name, color FROM tags WHERE color IS NOT NULL")
        return {row["name"].lower(): row["color"] for row in rows}

    def rename_tag(self, old: str, new: str) -> str:
        """Rename a tag; onto an existing tag it merges (the memes of both keep the new one).
        Returns "renamed", "merged" or "unchanged"."""
        new = clean_tag(new)
        with self.write() as conn:
            source = self._require_tag(conn, old)
            target = self._tag_id(conn, new)
            affected = self._memes_with_tag(conn, source)
            if target is None or target == source:
                current = conn.execute(self._sql("SELECT name FROM tags WHERE id = ?"), (source,)).fetchone()["name"]
                if current == new:
                    return "unchanged"
                conn.execute(self._sql("UPDATE tags SET name = ? WHERE id = ?"), (new, source))
                outcome = "renamed"
            else:
                conn.execute(self._sql(
                    "INSERT INTO meme_tags (meme_id, tag_id) SELECT meme_id, ? FROM meme_tags WHERE tag_id = ? "
                    "ON CONFLICT DO NOTHING"), (target, source))
                # The merged tag keeps its own colour, or takes the old tag's when it had none.
                conn.execute(self._sql(
                    "UPDATE tags SET color = COALESCE(color, (SELECT color FROM tags WHERE id = ?)) WHERE id = ?"),
                    (source, target))
                conn.execute(self._sql("DELETE FROM meme_tags WHERE tag_id = ?"), (source,))
                conn.execute(self._sql("DELETE FROM tags WHERE id = ?"), (source,))
                outcome = "merged"
            for meme_id in affected:
                self._reindex_meme(conn, meme_id)
            return outcome

    def delete_tag(self, name: str) -> int:
        """Delete a tag everywhere; returns how many memes lost it."""
        with self.write() as conn:
            tag_id = self._require_tag(conn, name)
            affected = self._memes_with_tag(conn, tag_id)
            conn.execute(self._sql("DELETE FROM meme_tags WHERE tag_id = ?"), (tag_id,))
            conn.execute(self._sql("DELETE FROM tags WHERE id = ?"), (tag_id,))
            for meme_id in affected:
                self._reindex_meme(conn, meme_id)
            return len(affected)

    def set_tag_color(self, name: str, color: str | None) -> None:
        """Give a tag a palette colour (None or "" removes it)."""
        color = clean_color(color)
        with self.write() as conn:
            tag_id = self._require_tag(conn, name)
            conn.execute(self._sql("UPDATE tags SET color = ? WHERE id = ?"), (color, tag_id))

    def delete_unused_tags(self) -> list[str]:
        """Delete every tag no meme carries; returns their names."""
        with self.write() as conn:
            rows = conn.execute(
                "SELECT id, name FROM tags t WHERE NOT EXISTS (SELECT 1 FROM meme_tags mt WHERE mt.tag_id = t.id)"
            ).fetchall()
            for row in rows:
                conn.execute(self._sql("DELETE FROM tags WHERE id = ?"), (row["id"],))
            return sorted((row["name"] for row in rows), key=str.lower)

    # -- removing memes ----------------------------------------------------------------
    def remove_memes(self, meme_ids: Iterable[int], *, exclude_paths: Iterable[str] = ()) -> list[int]:
        """Delete the rows of ``meme_ids`` (unknown ids are ignored) and remember ``exclude_paths`` as
        removed by the user, in one transaction. Returns the ids that were removed."""
        ids = sorted({i for i in meme_ids if _INT64_MIN <= i <= _INT64_MAX})
        excluded = list(dict.fromkeys(exclude_paths))
        with self.write() as conn:
            removed = []
            for meme_id in ids:
                row = conn.execute(self._sql("SELECT id FROM memes WHERE id = ?"), (meme_id,)).fetchone()
                if row is None:
                    continue
                self._unindex_meme(conn, meme_id)
                conn.execute(self._sql("DELETE FROM memes WHERE id = ?"), (meme_id,))
                removed.append(meme_id)
            self._exclude(conn, excluded)
            if removed:
                self._bump_vectors(conn)
            return removed

    def _exclude(self, conn, paths: list[str]) -> None:
        now = time.time()
        for path in paths:
            conn.execute(self._sql("INSERT INTO excluded_paths (path, removed_at) VALUES (?, ?) "
                                   "ON CONFLICT (path) DO UPDATE SET removed_at = excluded.removed_at"), (path, now))

    def exclude_paths(self, paths: Iterable[str]) -> None:
        """Remember paths the user removed from the library (a rescan skips them)."""
        with self.write() as conn:
            self._exclude(conn, list(dict.fromkeys(paths)))

    def excluded_paths(self) -> set[str]:
        return {row["path"] for row in self.query("SELECT path FROM excluded_paths")}

    def include_paths(self, paths: Iterable[str]) -> int:
        """Forget exclusions, so the next scan indexes those files again; returns how many were excluded."""
        wanted = list(dict.fromkeys(paths))
        if not wanted:
            raise InvalidInputError("give at least one path")
        with self.write() as conn:
            return sum(conn.execute(self._sql("DELETE FROM excluded_paths WHERE path = ?"), (p,)).rowcount for p in wanted)
