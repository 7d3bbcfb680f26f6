"""How many cases a hardening test tried, for docs/RELIABILITY.md.

A test calls ``tried(n)``; the autouse ``record_cases`` fixture (imported by the conftest of
tests/hostile, fuzz, faults and security) stores the total as the JUnit property ``cases``,
which scripts/reliability_report.py reads. Hypothesis tests call ``tried()`` once per example.
"""

from __future__ import annotations

import sys
from collections import Counter

import pytest

TRIED: Counter[str] = Counter()


def tried(n: int = 1, name: str | None = None) -> None:
    TRIED[name or sys._getframe(1).f_code.co_name] += n


@pytest.fixture(autouse=True)
def record_cases(request):
    name = request.node.originalname
    TRIED.pop(name, None)
    yield
    count = TRIED.pop(name, None)
    if count is not None:
        request.node.user_properties.append(("cases", count))
