"""Real processes on 127.0.0.1 for the service and jobs tests: the ML service, workers, redis."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import yaml

def fake_models(delay: float) -> dict:
    """models.yml for the fake captioners the jobs and service tests ask for by name."""
    variants = {  # name: (description, options of the fake backend)
        "fake-slow": (f"fake captioner that takes {delay} s per image", {"delay_s": delay}),
        "fake-flaky": ("fake captioner failing every third image", {"fail_every": 3}),
        "fake-batched": (f"fake captioner taking {delay} s per image, 4 images per model call",
                         {"delay_s": delay, "batch_size": 4}),
        "fake-broken": ("fake captioner that always fails", {"fail_every": 1}),
    }
    return {"models": {name: {"family": "fake", "description": description, "size": "0", "prompt": "describe",
                              "language": "en", "generation": {"max_new_tokens": 64}, "backends": ["fake"],
                              "sources": {"fake": options}}
                       for name, (description, options) in variants.items()}}


def write_fake_models(home: Path, delay: float = 1.0) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "models.yml").write_text(yaml.safe_dump(fake_models(delay), sort_keys=False), encoding="utf-8")


def link_models(home: Path, shared_models_dir: Path) -> None:
    """Reuse the session's converted MiniLM (see tests/conftest.py) instead of rebuilding it."""
    home.mkdir(parents=True, exist_ok=True)
    target = home / "models"
    if not target.exists():
        target.symlink_to(shared_models_dir, target_is_directory=True)


def wait_for(predicate, timeout: float = 60.0, interval: float = 0.1, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def child_env(home: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEMESEARCH_")}
    # MEMESEARCH_DEV (set in tests/conftest.py) stays: the children use the fake test models.
    env.update({"MEMESEARCH_HOME": str(home), "MEMESEARCH_THREADS": "1", "OMP_NUM_THREADS": "1", "MEMESEARCH_DEV": "1"})
    env.update(extra)
    return env


def memesearch(*args: str) -> list[str]:
    return [sys.executable, "-m", "memesearch", *args]


def start_service(home: Path, port: int, log: Path, **env: str) -> subprocess.Popen:
    proc = subprocess.Popen(memesearch("ml", "serve", "--port", str(port)), env=child_env(home, **env),
                            stdout=subprocess.DEVNULL, stderr=log.open("w"))
    wait_healthy(f"http://127.0.0.1:{port}", proc, log)
    return proc


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"service exited with {proc.returncode}: {log.read_text()[-2000:]}")
        try:
            if httpx.get(f"{url}/healthz", timeout=1.0).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    stop(proc)
    raise RuntimeError(f"service did not become healthy: {log.read_text()[-2000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)


def start_redis(workdir: Path) -> tuple[subprocess.Popen, str]:
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server is not installed (apt-get install -y redis-server)")
    port = free_port()
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(workdir), "--daemonize", "no"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"redis://127.0.0.1:{port}/0"
    import redis

    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        try:
            if redis.Redis.from_url(url).ping():
                return proc, url
        except redis.ConnectionError:
            time.sleep(0.05)
    stop(proc)
    raise RuntimeError("redis-server did not start")
