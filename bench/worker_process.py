"""Benches that measure every setting in a fresh process (so peak RSS and warm caches are that
setting's alone): the parent runs `script --worker SPEC_JSON`, the child prints `RESULT <json>`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable


def print_header(title: str) -> None:
    """The lines every bench output starts with: title and time, machine, command."""
    from machine import machine_line

    print(f"# {title}  {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    print("machine: " + machine_line())
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}\n", flush=True)


def run_worker(script: Path, spec: dict, threads: int, env: dict | None = None) -> dict | str:
    """One setting in its own process (``env``: extra environment): its RESULT, or `failed: <last stderr line>`."""
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), **(env or {})}
    done = subprocess.run([sys.executable, str(script), "--worker", json.dumps(spec)], capture_output=True, text=True, env=env)
    lines = [line for line in done.stdout.splitlines() if line.startswith("RESULT ")]
    return json.loads(lines[0][7:]) if lines else f"failed: {done.stderr.strip().splitlines()[-1:]}"


def main_or_worker(worker: Callable[[dict], dict], main: Callable[[], None]) -> None:
    """A script's entry: `--worker SPEC_JSON` measures one setting, anything else runs main()."""
    if len(sys.argv) > 2 and sys.argv[1] == "--worker":
        print("RESULT " + json.dumps(worker(json.loads(sys.argv[2]))), flush=True)
    else:
        main()
