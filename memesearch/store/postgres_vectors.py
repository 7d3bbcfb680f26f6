"""pgvector helpers: vector literals, binary decoding, HNSW indexes per (model, dim), binary COPY.

One ``vectors`` table holds every model's vectors in an untyped ``vector``
column; each (model, dim) gets a partial HNSW index on ``vector::vector(dim)``
(see ``schema_postgres``). Queries must repeat that exact expression and
predicate - with the model id and dimension as literals, never parameters,
so the planner can prove the partial index applies even for prepared plans.
"""

from __future__ import annotations

import hashlib
import struct
import time
from collections.abc import Iterable

import numpy as np

# HNSW build parameters: pgvector's defaults (m=16, ef_construction=64).
HNSW_M = 16
HNSW_EF_CONSTRUCTION = 64
# Candidates the HNSW scan keeps (at least the requested limit; pgvector caps it at 1000).
# bench_pg_search at 1M vectors shaped like real MiniLM embeddings: recall@10 is 0.87-0.94
# at ef_search 100 and 0.97-0.98 at 400, for ~2 ms more per query (docs/BENCHMARKS.md).
MIN_EF_SEARCH = 400


def literal(vector: np.ndarray) -> str:
    """pgvector's text form, '[1,2,3]' (float32 round-trips through repr-precision floats)."""
    return "[" + ",".join(map(str, np.asarray(vector, dtype=np.float32).tolist())) + "]"


def decode(data: bytes) -> np.ndarray:
    """A vector from ``vector_send`` bytes: int16 dim, int16 unused, big-endian float32s."""
    return np.frombuffer(data, dtype=">f4", offset=4).astype(np.float32)


def index_name(model_id: str, dim: int) -> str:
    return f"vectors_hnsw_{hashlib.sha1(model_id.encode()).hexdigest()[:12]}_{dim}"


def sql_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def distance_expr(model_id: str, dim: int, alias: str = "v") -> tuple[str, str]:
    """(ORDER BY expression, WHERE predicate) that match the partial HNSW index of (model, dim)."""
    dim = int(dim)
    return (
        f"({alias}.vector::vector({dim})) <=> %s::vector({dim})",
        f"{alias}.model_id = {sql_literal(model_id)} AND {alias}.dim = {dim}",
    )


def ensure_index(conn, model_id: str, dim: int) -> None:
    """Create the HNSW cosine index for (model, dim) once; concurrent writers wait on an advisory lock."""
    name = index_name(model_id, dim)
    exists = conn.execute("SELECT 1 FROM pg_class WHERE relname = %s", (name,)).fetchone()
    if exists:
        return
    conn.execute("SELECT pg_advisory_xact_lock(hashtext(%s))", (name,))
    conn.execute(
        f"CREATE INDEX IF NOT EXISTS {name} ON vectors USING hnsw ((vector::vector({int(dim)})) vector_cosine_ops) "
        f"WITH (m = {HNSW_M}, ef_construction = {HNSW_EF_CONSTRUCTION}) "
        f"WHERE model_id = {sql_literal(model_id)} AND dim = {int(dim)}"
    )


def bump_vectors_version(conn) -> None:
    """Tell in-memory caches (and the search engine) that the set of searchable vectors changed."""
    conn.execute("UPDATE meta SET value = (value::bigint + 1)::text WHERE key = 'vectors_version'")


def model_dims(conn) -> list[tuple[str, int]]:
    return [(row["model_id"], row["dim"]) for row in conn.execute("SELECT DISTINCT model_id, dim FROM vectors")]


class VectorMethods:
    """The vector half of PostgresStore (needs its ``write`` and ``query``)."""

    # -- vectors -------------------------------------------------------------------
    def vector_hashes(self, model_id: str) -> dict[int, str]:
        rows = self.query("SELECT meme_id, text_hash FROM vectors WHERE model_id = %s", (model_id,))
        return {row["meme_id"]: row["text_hash"] for row in rows}

    def put_vectors(self, model_id: str, items: list[tuple[int, str, np.ndarray]], *, stage: str = "embed") -> None:
        """``stage``: the stage these vectors finish (image vectors finish "image_embed", not "embed")."""
        if not items:
            return
        with self.write() as conn:
            conn.cursor().executemany(
                "INSERT INTO vectors (meme_id, model_id, text_hash, dim, vector) VALUES (%s, %s, %s, %s, %s::vector) "
                "ON CONFLICT (meme_id, model_id) DO UPDATE SET text_hash = excluded.text_hash, "
                "dim = excluded.dim, vector = excluded.vector",
                [(i, model_id, h, int(v.shape[0]), literal(v)) for i, h, v in items],
            )
            conn.execute(
                "INSERT INTO stages (meme_id, stage, status, updated_at) SELECT id, %s, 'done', %s "
                "FROM unnest(%s::bigint[]) AS id ON CONFLICT (meme_id, stage) DO UPDATE SET status = 'done', "
                "error = NULL, updated_at = excluded.updated_at", (stage, time.time(), [i for i, _, _ in items]),
            )
            for dim in {int(v.shape[0]) for _, _, v in items}:
                ensure_index(conn, model_id, dim)
            bump_vectors_version(conn)

    def ids_needing_vectors(self, model_id: str) -> list[int]:
        """Present memes with no vector from ``model_id`` or whose text changed since (embed stage queued)."""
        rows = self.query(
            "SELECT m.id FROM memes m LEFT JOIN vectors v ON v.meme_id = m.id AND v.model_id = %s "
            "LEFT JOIN stages s ON s.meme_id = m.id AND s.stage = 'embed' "
            "WHERE m.status = 'ok' AND (v.meme_id IS NULL OR s.status IS NULL OR s.status != 'done') ORDER BY m.id",
            (model_id,),
        )
        return [row["id"] for row in rows]

    def vectors_version(self) -> int:
        return int(self.query("SELECT value FROM meta WHERE key = 'vectors_version'")[0]["value"])

    def load_vectors(self, model_id: str) -> tuple[np.ndarray, np.ndarray]:
        """(ids, matrix) of every vector of ``model_id`` for present memes (for export; search uses vector_search)."""
        rows = self.query(
            "SELECT v.meme_id, vector_send(v.vector) AS data FROM vectors v JOIN memes m ON m.id = v.meme_id "
            "WHERE v.model_id = %s AND m.status = 'ok' ORDER BY v.meme_id", (model_id,),
        )
        if not rows:
            return np.zeros(0, dtype=np.int64), np.zeros((0, 0), dtype=np.float32)
        ids = np.fromiter((row["meme_id"] for row in rows), dtype=np.int64, count=len(rows))
        return ids, np.stack([decode(row["data"]) for row in rows])

    def vector_of(self, model_id: str, meme_id: int) -> np.ndarray | None:
        rows = self.query("SELECT vector_send(vector) AS data FROM vectors WHERE model_id = %s AND meme_id = %s",
                          (model_id, meme_id))
        return decode(rows[0]["data"]) if rows else None

    def vector_search(self, model_id: str, query: np.ndarray, limit: int,
                      allowed: set[int] | None = None) -> list[tuple[int, float]]:
        """Nearest present memes by cosine similarity, best first, through the HNSW index of (model, dim)."""
        if allowed is not None and not allowed:
            return []
        distance, predicate = distance_expr(model_id, int(query.shape[0]))
        params: list = [literal(query)]
        only = ""
        if allowed is not None:
            only, params = " AND v.meme_id = ANY(%s)", params + [list(allowed)]
        ef_search = min(1000, max(MIN_EF_SEARCH, limit))
        with self.write() as conn:  # a transaction scopes the SET LOCALs to this query
            # Iterative scans keep walking the graph when filters (missing memes, allowed ids) drop candidates.
            conn.execute(f"SET LOCAL hnsw.ef_search = {ef_search}")
            conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
            rows = conn.execute(
                f"SELECT v.meme_id, {distance} AS distance FROM vectors v JOIN memes m ON m.id = v.meme_id "
                f"WHERE {predicate} AND m.status = 'ok'{only} ORDER BY distance LIMIT %s", (*params, limit),
            ).fetchall()
        # relaxed_order may return neighbours slightly out of order: sort exactly.
        hits = sorted(((row["meme_id"], 1.0 - float(row["distance"])) for row in rows), key=lambda hit: (-hit[1], hit[0]))
        return hits


# -- binary COPY: 10x faster than INSERT for bulk loads (db copy, benchmarks) ---------
_HEADER = b"PGCOPY\n\xff\r\n\x00" + struct.pack(">ii", 0, 0)
_TRAILER = struct.pack(">h", -1)


def _field(value, kind: str) -> bytes:
    if value is None:
        return struct.pack(">i", -1)
    if kind == "int8":
        return struct.pack(">iq", 8, int(value))
    if kind == "int4":
        return struct.pack(">ii", 4, int(value))
    if kind == "float8":
        return struct.pack(">id", 8, float(value))
    if kind == "vector":
        array = np.asarray(value, dtype=">f4")
        body = struct.pack(">hh", array.shape[0], 0) + array.tobytes()
        return struct.pack(">i", len(body)) + body
    data = str(value).encode("utf-8")  # text
    return struct.pack(">i", len(data)) + data


def copy_rows(conn, table: str, columns: list[str], kinds: list[str], rows: Iterable[tuple], chunk: int = 5000) -> int:
    """Binary COPY of ``rows`` into ``table``; kinds are int8/int4/float8/text/vector per column."""
    count = 0
    field_count = struct.pack(">h", len(columns))
    with conn.cursor().copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.write(_HEADER)
        buffer: list[bytes] = []
        for row in rows:
            buffer.append(field_count + b"".join(_field(v, k) for v, k in zip(row, kinds)))
            count += 1
            if len(buffer) >= chunk:
                copy.write(b"".join(buffer))
                buffer.clear()
        buffer.append(_TRAILER)
        copy.write(b"".join(buffer))
    return count
