"""What machine a benchmark ran on: CPU model, the SIMD flags that change kernel choice, cores,
load and library versions. Every bench script prints this so that figures from different
machines (AVX2 vs AVX-512 VNNI/AMX) are never compared blindly."""

from __future__ import annotations

import os
import platform
from importlib import metadata
from pathlib import Path

from memesearch.ml.cpu import cpu_flags

# Flags that decide which int8/fp32 kernels onnxruntime and oneDNN pick.
INTERESTING_FLAGS = ("avx2", "fma", "f16c", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni",
                     "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
PACKAGES = ("numpy", "onnxruntime", "torch", "transformers", "rapidocr", "opencv-python-headless")


def cpu_model_and_flags() -> tuple[str, list[str]]:
    cpu = platform.processor() or "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    present = cpu_flags()
    return cpu, [flag for flag in INTERESTING_FLAGS if flag in present]


def package_version(name: str) -> str:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return "not installed"


def machine_facts() -> dict:
    cpu, flags = cpu_model_and_flags()
    one, five, _ = os.getloadavg()
    return {
        "cpu": cpu,
        "flags": " ".join(flags),
        "cores": os.cpu_count(),
        "load_1m": round(one, 2),
        "load_5m": round(five, 2),
        "python": platform.python_version(),
        **{name: package_version(name) for name in PACKAGES},
    }


def machine_line() -> str:
    facts = machine_facts()
    return (f"{facts['cpu']} · {facts['cores']} cores · flags: {facts['flags'] or 'none of interest'}"
            f" · load {facts['load_1m']} (1 min)")


if __name__ == "__main__":
    print(machine_line())
