"""Long image-mutation fuzz run: every mutated file through the real decode + hash + thumbnail
path (the scanner's ``inspect_file``, ``ensure_thumbnail``) and the ML service's byte decoder.

An *escape* is any exception other than the recorded-error outcome (ImageError) leaving those
functions: it would stop an index run or answer HTTP 500. Prints inputs tried, outcomes per
format, escapes (saved under --escapes for replay) and the peak RSS of this decoding process.

    flock /tmp/heavy.lock python bench/fuzz_images.py --count 10000 --seed 1

Results are in docs/RELIABILITY.md ("Image mutation fuzzing").
"""

from __future__ import annotations

import argparse
import collections
import json
import resource
import sys
import tempfile
import time
import traceback
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from memesearch.config import Settings  # noqa: E402
from tests.fuzz.image_paths import decode_everywhere  # noqa: E402
from tests.fuzz.mutate import EXTENSION, FORMATS, mutated_corpus  # noqa: E402


def rss_mb() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def check_one(path: Path, data: bytes, settings: Settings, index: int) -> tuple[str, str | None]:
    """('ok' | 'error', None), or ('escape', traceback) for one mutated file through every path."""
    try:
        record = decode_everywhere(path, data, settings, index)
    except Exception:  # noqa: BLE001 - AssertionError (unclear message) included: this is what we count
        return "escape", traceback.format_exc(limit=6)
    finally:
        path.unlink(missing_ok=True)
    return record.status, None


def largest_allowed(work_dir: Path, settings: Settings) -> dict[str, str]:
    """Valid images right at the pixel cap (the most a file may make us decode), every mode that
    needs a conversion: their peak RSS is the memory bound of one decode."""
    from PIL import Image

    side = int((settings.max_megapixels * 1e6) ** 0.5)
    made = {"rgba.png": ("RGBA", (9, 99, 199, 120), "PNG"), "rgb.jpg": ("RGB", (200, 30, 30), "JPEG"),
            "palette.gif": ("P", 7, "GIF"), "grey16.png": ("I;16", 300, "PNG")}
    outcomes = {}
    for name, (mode, colour, fmt) in made.items():
        path = work_dir / name
        Image.new(mode, (side, side), colour).save(path, format=fmt)  # freed before decoding
        outcome, detail = check_one(path, path.read_bytes(), settings, 0)
        outcomes[f"{name} {side}x{side}"] = outcome if detail is None else detail.strip().splitlines()[-1]
    return outcomes


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--escapes", type=Path, default=Path("fuzz-escapes"), help="where escaping inputs are saved")
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--no-largest", dest="largest", action="store_false",
                        help="skip decoding valid images at the pixel cap (the memory bound)")
    args = parser.parse_args()
    formats = tuple(args.formats.split(","))

    started, baseline = time.perf_counter(), rss_mb()
    outcomes: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    mutations: collections.Counter = collections.Counter()
    escapes: list[dict] = []
    with tempfile.TemporaryDirectory(prefix="fuzz-images-") as work:
        work_dir = Path(work)
        settings = Settings(home=work_dir / "data")
        for index, (fmt, name, data) in enumerate(mutated_corpus(args.count, args.seed, formats)):
            mutations.update(name.split("-", 2)[2].split("+"))
            outcome, detail = check_one(work_dir / f"input{EXTENSION[fmt]}", data, settings, index)
            outcomes[fmt][outcome] += 1
            if outcome == "escape":
                args.escapes.mkdir(parents=True, exist_ok=True)
                (args.escapes / f"{name}{EXTENSION[fmt]}").write_bytes(data)
                escapes.append({"input": name, "detail": detail.strip().splitlines()[-1]})
        fuzz_peak = peak_rss_mb()
        limits = largest_allowed(work_dir, settings) if args.largest else {}
    result = {
        "inputs": args.count, "seed": args.seed, "escapes": len(escapes),
        "outcomes": {fmt: dict(counter) for fmt, counter in outcomes.items()},
        "mutations": dict(mutations), "seconds": round(time.perf_counter() - started, 1),
        "rss_start_mb": round(baseline, 1), "peak_rss_mb_mutants": round(fuzz_peak, 1),
        "largest_allowed": limits, "peak_rss_mb": round(peak_rss_mb(), 1),
        "python": sys.version.split()[0], "pillow": __import__("PIL").__version__,
    }
    if args.json:
        print(json.dumps({**result, "escape_details": escapes[:50]}, indent=2))
    else:
        print(f"inputs tried: {result['inputs']} (seed {args.seed}) in {result['seconds']} s")
        for fmt, counter in result["outcomes"].items():
            print(f"  {fmt:5}: " + ", ".join(f"{k} {v}" for k, v in sorted(counter.items())))
        print("mutations: " + ", ".join(f"{k} {v}" for k, v in sorted(mutations.items())))
        print(f"escapes: {len(escapes)}")
        for escape in escapes[:20]:
            print(f"  {escape['input']}: {escape['detail']}")
        print(f"peak RSS while decoding the mutants: {result['peak_rss_mb_mutants']} MB "
              f"(start {result['rss_start_mb']} MB)")
        for name, outcome in limits.items():
            print(f"  at the pixel cap: {name}: {outcome}")
        if limits:
            print(f"peak RSS including the images at the pixel cap: {result['peak_rss_mb']} MB")
    return 1 if escapes or any(outcome != "ok" for outcome in limits.values()) else 0


if __name__ == "__main__":
    raise SystemExit(main())
