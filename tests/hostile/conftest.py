"""Records how many cases each test tried (see tests/reliability.py)."""

from tests.reliability import record_cases  # noqa: F401
