"""Web latency under load: a real `memesearch serve` process, driven from this (second) process.

Builds a synthetic 10k-meme library (texts and vectors shaped like real ones, see
bench_search.py; the query embedding is the real MiniLM), starts the server on
a free 127.0.0.1 port and sends N requests per scenario from C concurrent
clients. Reports p50 / p95 / max latency, throughput and errors.

    .venv/bin/python bench/bench_web.py [--memes 10000] [--concurrency 20] [--requests 400]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import platform
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_search import build_library  # noqa: E402
from memesearch.config import Settings  # noqa: E402
from memesearch.store.sqlite import SqliteStore  # noqa: E402
from tests.web.server import ServerProcess  # noqa: E402

EMBED_MODEL_ID = "all-minilm-l6-v2"


def prepare(home: Path, memes: int) -> list[str]:
    """The library, with its vectors labelled as MiniLM's so the server's vector search uses them."""
    store = SqliteStore(Settings(home=home).database_path)
    texts, _ = build_library(store, memes)
    with store.write() as conn:
        conn.execute("UPDATE vectors SET model_id = ?", (EMBED_MODEL_ID,))
        conn.execute("UPDATE meta SET value = CAST(value AS INTEGER) + 1 WHERE key = 'vectors_version'")
    store.close()
    rng = random.Random(5)
    queries = []
    for _ in range(500):
        words = texts[rng.randrange(len(texts))].split()
        length = rng.randint(2, 4)
        start = rng.randrange(max(1, len(words) - length))
        queries.append(" ".join(words[start : start + length]).lower())
    return queries


async def load(base: str, make_url, requests: int, concurrency: int) -> tuple[list[float], int, float]:
    timings: list[float] = []
    errors = 0
    counter = iter(range(requests))
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async def client_loop(client: httpx.AsyncClient) -> None:
        nonlocal errors
        for number in counter:
            started = time.perf_counter()
            try:
                response = await client.get(make_url(number))
                if response.status_code != 200:
                    errors += 1
            except httpx.HTTPError:
                errors += 1
            timings.append((time.perf_counter() - started) * 1000)

    began = time.perf_counter()
    async with httpx.AsyncClient(base_url=base, limits=limits, timeout=30) as client:
        await asyncio.gather(*(client_loop(client) for _ in range(concurrency)))
    return timings, errors, time.perf_counter() - began


WRK_SCRIPT = """
local paths = {%s}
local n = 0
request = function()
  n = n + 1
  return wrk.format("GET", paths[(n %% #paths) + 1])
end
done = function(summary, latency, requests)
  local errors = summary.errors.connect + summary.errors.read + summary.errors.write
               + summary.errors.status + summary.errors.timeout
  io.write(string.format("RESULT %%.1f %%.1f %%.1f %%.1f %%d\\n", latency:percentile(50) / 1000,
    latency:percentile(95) / 1000, latency.max / 1000, summary.requests / (summary.duration / 1e6), errors))
end
"""


def load_with_wrk(base: str, make_url, concurrency: int, seconds: int) -> tuple[float, float, float, float, int]:
    """The same scenario driven by wrk (C, Debian package `wrk`): the load generator then
    takes far less of the two cores than an asyncio Python client does."""
    import subprocess

    paths = ",".join('"' + make_url(n).replace('"', "%22").replace(" ", "%20") + '"' for n in range(400))
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write(WRK_SCRIPT % paths)
    out = subprocess.run(["wrk", "-t1", f"-c{concurrency}", f"-d{seconds}s", "-s", script.name, base],
                         capture_output=True, text=True, check=True).stdout
    line = next(line for line in out.splitlines() if line.startswith("RESULT"))
    p50, p95, worst, rate, errors = line.split()[1:]
    return float(p50), float(p95), float(worst), float(rate), int(errors)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--memes", type=int, default=10_000)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--requests", type=int, default=400, help="per scenario")
    parser.add_argument("--client", choices=["python", "wrk"], default="python",
                        help="load generator: an asyncio httpx client, or wrk (apt-get install wrk)")
    parser.add_argument("--seconds", type=int, default=10, help="per scenario, with --client wrk")
    args = parser.parse_args()
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    with tempfile.TemporaryDirectory(prefix="memesearch-bench-web-") as work:
        home = Path(work) / "data"
        built = time.perf_counter()
        queries = prepare(home, args.memes)
        print(f"library: {args.memes} memes built in {time.perf_counter() - built:.1f} s")
        server = ServerProcess(home).wait_ready(120)
        try:
            ids = list(range(1, args.memes + 1))
            scenarios = {
                "GET /api/search (hybrid)": lambda n: f"/api/search?q={queries[n % len(queries)]}&limit=20",
                "GET /api/search (keyword)": lambda n: f"/api/search?q={queries[n % len(queries)]}&mode=keyword&limit=20",
                "GET /?q= (search page)": lambda n: f"/?q={queries[n % len(queries)]}",
                "GET /api/memes/{id}": lambda n: f"/api/memes/{ids[(n * 7919) % len(ids)]}",
                "GET /memes/{id} (page)": lambda n: f"/memes/{ids[(n * 7919) % len(ids)]}",
            }
            # Warm-up: load the embedding model and the vector matrix once.
            asyncio.run(load(server.url, scenarios["GET /api/search (hybrid)"], 20, 2))
            amount = f"{args.seconds} s" if args.client == "wrk" else f"{args.requests} requests"
            print(f"{args.concurrency} concurrent clients ({args.client}), {amount} per scenario")
            print(f"{'scenario':<28} {'p50 ms':>8} {'p95 ms':>8} {'max ms':>8} {'req/s':>8} {'errors':>7} "
                  f"{'server CPU ms/req':>18}")
            for name, make_url in scenarios.items():
                cpu_before, began = cpu_seconds(server.process.pid), time.perf_counter()
                if args.client == "wrk":
                    p50, p95, worst, rate, errors = load_with_wrk(server.url, make_url, args.concurrency, args.seconds)
                else:
                    timings, errors, elapsed = asyncio.run(load(server.url, make_url, args.requests, args.concurrency))
                    p50, p95 = statistics.median(timings), float(np.percentile(timings, 95))
                    worst, rate = max(timings), len(timings) / elapsed
                served = rate * (time.perf_counter() - began)
                cpu_ms = (cpu_seconds(server.process.pid) - cpu_before) * 1000 / max(served, 1)
                print(f"{name:<28} {p50:>8.1f} {p95:>8.1f} {worst:>8.1f} {rate:>8.1f} {errors:>7} {cpu_ms:>18.2f}")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
