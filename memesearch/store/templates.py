"""Template features and groups, stored the same way in SQLite and PostgreSQL.

One set of SQL statements for both stores: they differ only in the placeholder
(``?`` vs ``%s``), which ``_sql`` swaps. Rows of either database are read by
column name.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable

import numpy as np

from memesearch.errors import InvalidInputError, NotFoundError
from memesearch.text import clean_text, fold
from memesearch.templates.record import FEATURES_VERSION, VECTOR_DIM, TemplateFeatures

STAGE = "templates"
#: Longest group name accepted (names are search text, not essays).
MAX_NAME = 80


def stored_boxes(boxes: list[tuple[float, float, float, float]]) -> list[list[float]]:
    """Caption boxes as they are stored (4 decimals), which the template stage reads back."""
    return [[round(v, 4) for v in box] for box in boxes]


class TemplateStore:
    def __init__(self, store) -> None:
        self.store = store
        self._postgres = store.kind == "postgres"

    def _sql(self, sql: str) -> str:
        return sql.replace("?", "%s") if self._postgres else sql

    def _query(self, sql: str, params: Iterable = ()) -> list:
        return self.store.query(self._sql(sql), tuple(params))

    # -- OCR boxes (written by the OCR stage, read by the features stage) ----------------
    def put_ocr_boxes(self, meme_id: int, boxes: list[tuple[float, float, float, float]]) -> None:
        encoded = json.dumps(stored_boxes(boxes))
        with self.store.write() as conn:
            conn.execute(self._sql("UPDATE memes SET ocr_boxes = ? WHERE id = ?"), (encoded, meme_id))

    def ocr_boxes(self, meme_id: int) -> list[tuple[float, float, float, float]]:
        """The meme's caption boxes, or those of a file with the same bytes (duplicates share OCR)."""
        rows = self._query(
            "SELECT m.ocr_boxes AS boxes FROM memes m WHERE m.id = ? AND m.ocr_boxes IS NOT NULL "
            "UNION ALL SELECT o.ocr_boxes FROM memes m JOIN memes o ON o.sha256 = m.sha256 "
            "WHERE m.id = ? AND o.ocr_boxes IS NOT NULL",
            (meme_id, meme_id),
        )
        return [tuple(box) for box in json.loads(rows[0]["boxes"])] if rows else []

    # -- features --------------------------------------------------------------------------
    _PENDING = (
        "SELECT m.id FROM memes m LEFT JOIN stages s ON s.meme_id = m.id AND s.stage = ? "
        "LEFT JOIN template_features f ON f.meme_id = m.id "
        "WHERE m.status = 'ok' AND (s.status IS NULL OR s.status != 'done' OR f.meme_id IS NULL "
        "OR f.version != ?)"
    )

    def pending(self) -> list[int]:
        """Present memes whose features are missing, failed, or from an older FEATURES_VERSION."""
        rows = self._query(self._PENDING + " ORDER BY m.id", (STAGE, FEATURES_VERSION))
        return [row["id"] for row in rows]

    def needs_features(self, meme_id: int) -> bool:
        return bool(self._query(self._PENDING + " AND m.id = ?", (STAGE, FEATURES_VERSION, meme_id)))

    def put_features(self, meme_id: int, features: TemplateFeatures) -> None:
        """Store new features; the meme leaves its group until grouping has seen it again."""
        vector, points, descriptors = features.to_bytes()
        now = time.time()
        with self.store.write() as conn:
            conn.execute(self._sql("DELETE FROM template_features WHERE meme_id = ?"), (meme_id,))
            conn.execute(
                self._sql("INSERT INTO template_features (meme_id, version, vector, points, descriptors, grouped) "
                          "VALUES (?, ?, ?, ?, ?, 0)"),
                (meme_id, FEATURES_VERSION, vector, points, descriptors),
            )
            conn.execute(
                self._sql("INSERT INTO stages (meme_id, stage, status, attempts, error, updated_at) "
                          "VALUES (?, ?, 'done', 0, NULL, ?) ON CONFLICT (meme_id, stage) DO UPDATE SET "
                          "status = 'done', error = NULL, updated_at = excluded.updated_at"),
                (meme_id, STAGE, now),
            )

    def vectors(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids, matrix) of every present meme's global template vector."""
        rows = self._query(
            "SELECT f.meme_id, f.vector FROM template_features f JOIN memes m ON m.id = f.meme_id "
            "WHERE m.status = 'ok' AND f.version = ? ORDER BY f.meme_id",
            (FEATURES_VERSION,),
        )
        ids = np.array([row["meme_id"] for row in rows], np.int64)
        matrix = np.frombuffer(b"".join(bytes(row["vector"]) for row in rows), np.float16)
        return ids, matrix.astype(np.float32).reshape(len(rows), VECTOR_DIM)

    def vectors_signature(self) -> tuple:
        """Changes when a present meme gains or loses its vector (cheap: no vector is read), so
        a copy of ``vectors()`` kept between searches knows when to reload."""
        row = self._query(
            "SELECT COUNT(*) AS n, MAX(f.meme_id) AS top, SUM(f.meme_id) AS total FROM template_features f "
            "JOIN memes m ON m.id = f.meme_id WHERE m.status = 'ok' AND f.version = ?", (FEATURES_VERSION,))[0]
        return (int(row["n"]), int(row["top"] or 0), int(row["total"] or 0))

    def features_of(self, meme_ids: list[int]) -> dict[int, TemplateFeatures]:
        found: dict[int, TemplateFeatures] = {}
        for start in range(0, len(meme_ids), 500):
            chunk = meme_ids[start : start + 500]
            rows = self._query(
                f"SELECT meme_id, vector, points, descriptors FROM template_features "
                f"WHERE meme_id IN ({', '.join('?' * len(chunk))})",
                chunk,
            )
            for row in rows:
                found[row["meme_id"]] = TemplateFeatures.from_bytes(
                    bytes(row["vector"]), bytes(row["points"]), bytes(row["descriptors"]))
        return found

    # -- groups ----------------------------------------------------------------------------
    def ungrouped(self) -> list[int]:
        rows = self._query(
            "SELECT f.meme_id FROM template_features f JOIN memes m ON m.id = f.meme_id "
            "WHERE f.grouped = 0 AND m.status = 'ok' ORDER BY f.meme_id")
        return [row["meme_id"] for row in rows]

    def group_ids(self) -> dict[int, int]:
        """meme id -> group id, for every grouped meme."""
        rows = self._query("SELECT meme_id, group_id FROM template_features WHERE group_id IS NOT NULL")
        return {row["meme_id"]: row["group_id"] for row in rows}

    def save_grouping(self, processed: list[int], components: list[set[int]]) -> None:
        """Record the groups that grouping found, in one transaction.

        ``components`` are sets of meme ids that share a picture. Each becomes one
        group: the oldest group among its members' current ones (others are merged into
        it, and a merged group's name survives if the kept one has none), or a new group.
        ``processed`` memes are marked as grouped whatever they joined.

        Current groups are read inside the write transaction (and PostgreSQL takes an
        advisory lock), so two grouping passes saving at once (two workers finishing
        runs) see each other's groups and merge into them instead of duplicating them.
        """
        with self.store.write() as conn:
            if self._postgres:
                conn.execute("SELECT pg_advisory_xact_lock(hashtext('memesearch-template-groups'))")
            current = self.group_ids()
            for component in components:
                existing = sorted({current[m] for m in component if m in current})
                if existing:
                    keep = existing[0]
                    if len(existing) > 1:
                        others = existing[1:]
                        marks = ", ".join("?" * len(others))
                        conn.execute(self._sql(
                            f"UPDATE template_groups SET name = (SELECT g.name FROM template_groups g "
                            f"WHERE g.id IN ({marks}) AND g.name IS NOT NULL ORDER BY g.id LIMIT 1) "
                            f"WHERE id = ? AND name IS NULL"), (*others, keep))
                        conn.execute(self._sql(f"UPDATE template_features SET group_id = ? WHERE group_id IN ({marks})"),
                                     (keep, *others))
                        conn.execute(self._sql(f"DELETE FROM template_groups WHERE id IN ({marks})"), others)
                else:
                    keep = conn.execute(self._sql("INSERT INTO template_groups (created_at) VALUES (?) RETURNING id"),
                                        (time.time(),)).fetchone()["id"]
                members = sorted(component)
                for start in range(0, len(members), 500):
                    chunk = members[start : start + 500]
                    conn.execute(self._sql(f"UPDATE template_features SET group_id = ? WHERE meme_id IN "
                                           f"({', '.join('?' * len(chunk))})"), (keep, *chunk))
            for start in range(0, len(processed), 500):
                chunk = processed[start : start + 500]
                conn.execute(self._sql(f"UPDATE template_features SET grouped = 1 WHERE meme_id IN "
                                       f"({', '.join('?' * len(chunk))})"), chunk)

    def group_of(self, meme_id: int) -> int | None:
        rows = self._query(
            "SELECT f.group_id FROM template_features f WHERE f.meme_id = ? AND f.group_id IS NOT NULL "
            "AND (SELECT COUNT(*) FROM template_features o JOIN memes m ON m.id = o.meme_id "
            "     WHERE o.group_id = f.group_id AND m.status = 'ok') >= 2",
            (meme_id,),
        )
        return rows[0]["group_id"] if rows else None

    def members(self, group_id: int) -> list[int]:
        rows = self._query(
            "SELECT f.meme_id FROM template_features f JOIN memes m ON m.id = f.meme_id "
            "WHERE f.group_id = ? AND m.status = 'ok' ORDER BY f.meme_id", (group_id,))
        return [row["meme_id"] for row in rows]

    def groups(self, min_size: int = 2) -> list[dict]:
        """Groups of at least ``min_size`` present memes, largest first:
        ``{"id", "name", "size", "members": [{"id", "path"}]}``."""
        rows = self._query(
            "SELECT g.id AS group_id, g.name, m.id, m.path FROM template_groups g "
            "JOIN template_features f ON f.group_id = g.id JOIN memes m ON m.id = f.meme_id "
            "WHERE m.status = 'ok' ORDER BY g.id, m.id")
        groups: dict[int, dict] = {}
        for row in rows:
            group = groups.setdefault(row["group_id"], {"id": row["group_id"], "name": row["name"], "size": 0, "members": []})
            group["members"].append({"id": row["id"], "path": row["path"]})
            group["size"] += 1
        found = [group for group in groups.values() if group["size"] >= min_size]
        return sorted(found, key=lambda group: (-group["size"], group["id"]))

    def group(self, group_id: int) -> dict:
        found = [g for g in self.groups(min_size=1) if g["id"] == group_id]
        if not found:
            raise NotFoundError(f"no template group with id {group_id}")
        return found[0]

    def set_name(self, group_id: int, name: str | None) -> None:
        name = " ".join(clean_text(name or "").split()) or None
        if name is not None and len(name) > MAX_NAME:
            raise InvalidInputError(f"a template name has at most {MAX_NAME} characters, got {len(name)}")
        with self.store.write() as conn:
            updated = conn.execute(self._sql("UPDATE template_groups SET name = ? WHERE id = ?"), (name, group_id))
            if updated.rowcount == 0:
                raise NotFoundError(f"no template group with id {group_id}")

    # -- search --------------------------------------------------------------------------
    def filter_ids(self, templates: list[int], same: list[int]) -> set[int]:
        """Present memes in every given group and sharing the template of every given meme."""
        allowed: set[int] | None = None
        for group_id in templates:
            members = set(self.members(group_id))
            allowed = members if allowed is None else allowed & members
        for meme_id in same:
            group_id = self.group_of(meme_id)
            members = set(self.members(group_id)) if group_id is not None else set()
            allowed = members if allowed is None else allowed & members
        return allowed or set()

    def named_members(self, words: list[str]) -> list[int]:
        """Members of the groups whose name holds every word (folded like keyword search):
        naming a group makes one name find all of its memes."""
        folded = [fold(word) for word in words if fold(word)]
        if not folded:
            return []
        rows = self._query("SELECT id, name FROM template_groups WHERE name IS NOT NULL ORDER BY id")
        found: list[int] = []
        for row in rows:
            name = fold(row["name"])
            if all(word in name for word in folded):
                found += self.members(row["id"])
        return found

    def siblings(self, meme_ids: list[int]) -> dict[int, list[int]]:
        """For each meme in a group of two or more: the other present members, in id order."""
        if not meme_ids:
            return {}
        groups: dict[int, list[int]] = {}
        for start in range(0, len(meme_ids), 500):
            chunk = meme_ids[start : start + 500]
            rows = self._query(
                "SELECT f.meme_id, o.meme_id AS other FROM template_features f "
                "JOIN template_features o ON o.group_id = f.group_id AND o.meme_id != f.meme_id "
                "JOIN memes m ON m.id = o.meme_id "
                f"WHERE m.status = 'ok' AND f.meme_id IN ({', '.join('?' * len(chunk))}) ORDER BY o.meme_id",
                chunk,
            )
            for row in rows:
                groups.setdefault(row["meme_id"], []).append(row["other"])
        return groups
