"""The Run record the CLI and the web UI show: state, counts, rate and ETA."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, field

KINDS = ("describe", "index", "ocr", "embed")
ACTIVE_STATES = ("queued", "running")
#: How many failed items a Run carries (the newest first).
ERRORS_SHOWN = 20


@dataclass
class Run:
    id: int
    kind: str
    model: str | None
    state: str
    total: int
    done: int
    failed: int
    rate_per_s: float | None
    eta_s: float | None
    created_at: float
    finished_at: float | None
    errors: list[dict] = field(default_factory=list)
    queued: int = 0
    running: int = 0
    cancelled: int = 0
    started_at: float | None = None
    folder_id: int | None = None
    error: str | None = None

    def as_dict(self) -> dict:
        return asdict(self)

    @property
    def active(self) -> bool:
        return self.state in ACTIVE_STATES

    @classmethod
    def from_row(cls, row: dict, errors: list[dict], now: float | None = None) -> Run:
        now = time.time() if now is None else now
        counts = row["counts"]
        total = sum(counts.values())
        rate = _rate(row, now)
        remaining = counts["queued"] + counts["running"]
        eta = remaining / rate if rate and row["state"] in ACTIVE_STATES else None
        return cls(
            id=row["id"], kind=row["kind"], model=row["model"], state=row["state"], total=total,
            done=counts["done"], failed=counts["failed"], rate_per_s=rate, eta_s=eta,
            created_at=row["created_at"], finished_at=row["finished_at"], errors=errors,
            queued=counts["queued"], running=counts["running"], cancelled=counts["cancelled"],
            started_at=row["started_at"], folder_id=row["params"].get("folder_id"), error=row["error"],
        )


def _rate(row: dict, now: float) -> float | None:
    """Items finished per second over the last minute (or since the run started, if later)."""
    if not row["recent_done"] or row["started_at"] is None:
        return None
    window = min(60.0, now - row["started_at"]) if row["state"] in ACTIVE_STATES else None
    if window is None:  # finished: the rate over the run's active time
        window = min(60.0, (row["finished_at"] or now) - row["started_at"])
    return row["recent_done"] / max(window, 1e-3)
