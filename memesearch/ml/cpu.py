"""What the CPU can do, from /proc/cpuinfo (Linux; elsewhere nothing is known)."""

from __future__ import annotations

from pathlib import Path

#: Instructions that add u8 x s8 products without saturating: 8-bit int8 weights are exact with them.
VNNI_FLAGS = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})


def cpu_flags() -> set[str]:
    """The flags of the first processor in /proc/cpuinfo; empty where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def has_vnni() -> bool:
    return bool(cpu_flags() & VNNI_FLAGS)
