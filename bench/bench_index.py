"""Index throughput: RapidOCR's default pipeline against `memesearch index` on the same files.

Usage:  .venv/bin/python bench/bench_index.py [--memes 40] [--seed 0] [--repeats 1]
                                              [--folder DIR] [--models-dir DIR] [--skip-one-process]

Rows, each on the same files in one run:
  rapidocr default      RapidOCR() as its README shows it (all defaults, its own threads), one
                        file after the other, model load included;
  memesearch index      `python -m memesearch index` in a fresh data dir (scan, hash, OCR,
                        templates, MiniLM embeddings, SQLite), start-up and model loads included;
  ... 1 OCR process     the same with MEMESEARCH_OCR_WORKERS=1 (OCR in the CLI process);
  ... spin after runs   and with MEMESEARCH_SPIN=always (idle onnxruntime threads spin on after
                        each run, as before session 16).

Per row: wall memes/s, CPU seconds per meme (every process, workers included) and OCR word
recall against the rendered captions (with --folder there are no captions: recall is "-").
On a shared machine wall time depends on the neighbours; CPU time much less, so the ratio
is computed from an idle-machine estimate made of CPU time: rapidocr keeps every core busy
through its spinning intra-op threads (wall = CPU / cores), memesearch runs OCR in one
process per core and the rest (start-up, scan, templates, embeddings: the "OCR off" row)
on one core, which is counted as not parallel at all.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ocr import word_recall  # noqa: E402
from machine import machine_line  # noqa: E402

from memesearch.library.decode import EXTENSIONS  # noqa: E402
from memesearch.library.sample_captions import SPACELESS_CAPTION  # noqa: E402
from memesearch.library.samples import render_sample_memes  # noqa: E402


def _cpu_seconds(usage) -> float:
    return usage.ru_utime + usage.ru_stime


def _children_cpu() -> float:
    return _cpu_seconds(resource.getrusage(resource.RUSAGE_CHILDREN))


def run_rapidocr_default(files: list[Path]) -> tuple[float, float, dict[str, str]]:
    """RapidOCR's default pipeline in a child process; returns wall s, CPU s and text per file."""
    code = (
        "import json, sys\n"
        "from rapidocr import RapidOCR\n"
        "engine = RapidOCR(params={'Global.log_level': 'error'})  # only quieter logs\n"
        "texts = {}\n"
        "for path in sys.argv[1:]:\n"
        "    out = engine(path)\n"
        "    texts[path] = ' '.join(out.txts or ())\n"
        "print(json.dumps(texts))\n"
    )
    before, started = _children_cpu(), time.perf_counter()
    done = subprocess.run([sys.executable, "-c", code, *map(str, files)], capture_output=True, text=True, check=True)
    return time.perf_counter() - started, _children_cpu() - before, json.loads(done.stdout)


def run_memesearch_index(folder: Path, models_dir: Path | None, env_extra: dict[str, str]) -> tuple[float, float, dict[str, str]]:
    """`memesearch add` + `memesearch index` in a fresh data dir; returns wall s, CPU s and OCR text per file."""
    with tempfile.TemporaryDirectory() as home:
        if models_dir is not None:
            (Path(home) / "models").symlink_to(models_dir.resolve(), target_is_directory=True)
        env = {**os.environ, **env_extra}
        base = [sys.executable, "-m", "memesearch", "--data-dir", home]
        subprocess.run([*base, "add", str(folder)], check=True, capture_output=True, env=env)
        before, started = _children_cpu(), time.perf_counter()
        done = subprocess.run([*base, "index", "--json"], capture_output=True, text=True, env=env)
        wall, cpu = time.perf_counter() - started, _children_cpu() - before
        if done.returncode != 0:
            raise SystemExit(f"memesearch index failed:\n{done.stderr[-2000:]}")
        summary = json.loads(done.stdout)
        counts = summary["counts"]
        assert counts["vectors"] == counts["total"] and (env_extra.get("MEMESEARCH_OCR_ENABLED") == "false"
                                                           or counts["ocr_done"] == counts["total"]), counts
        conn = sqlite3.connect(Path(home) / "memesearch.db")
        texts = dict(conn.execute("SELECT path, COALESCE(ocr_text, '') FROM memes"))
        conn.close()
    return wall, cpu, texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--memes", type=int, default=40, help="rendered sample memes (ignored with --folder)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=1, help="runs per row; medians are shown")
    parser.add_argument("--folder", type=Path, help="your own memes instead of rendered ones")
    parser.add_argument("--models-dir", type=Path, help="an existing memesearch models dir (skips building MiniLM"
                        " and deriving the int8 text detector inside the timed rows)")
    parser.add_argument("--skip-one-process", action="store_true", help="leave out the 1-OCR-process row")
    args = parser.parse_args()

    cores = len(os.sched_getaffinity(0))
    print(machine_line())
    if args.models_dir:  # the int8 OCR graphs are derived once per models dir: not part of any row
        from memesearch.ml.ocr import RapidOcrEngine

        engine = RapidOcrEngine(threads=1, models_dir=args.models_dir.resolve())
        engine.ensure_loaded()
        print(f"OCR text detection: {engine.detector_dtype}, recognition: {engine.recognizer_dtype}")
    with tempfile.TemporaryDirectory() as scratch:
        if args.folder:
            folder, captions = args.folder.resolve(), {}
        else:
            folder = Path(scratch) / "memes"
            memes = render_sample_memes(folder, count=args.memes, seed=args.seed)
            # The spaceless meme is scored on its run of letters: that is what it shows.
            captions = {str(m.path.resolve()): SPACELESS_CAPTION.replace(" ", "") if m.text == SPACELESS_CAPTION else m.text
                        for m in memes}
        files = sorted(p.resolve() for p in folder.rglob("*") if p.suffix.lower() in EXTENSIONS and not p.name.startswith("."))
        print(f"files: {len(files)} in {folder}" + (f" (rendered, seed {args.seed})" if not args.folder else ""))

        all_rows = {
            "rapidocr default": lambda: run_rapidocr_default(files),
            "memesearch index": lambda: run_memesearch_index(folder, args.models_dir, {}),
            "memesearch index, 1 OCR process": lambda: run_memesearch_index(folder, args.models_dir, {"MEMESEARCH_OCR_WORKERS": "1"}),
            # The same with onnxruntime's threads spinning on after each run (the app before session 16).
            "... 1 OCR process, spin after runs": lambda: run_memesearch_index(
                folder, args.models_dir, {"MEMESEARCH_OCR_WORKERS": "1", "MEMESEARCH_SPIN": "always"}),
            # Everything but OCR (start-up, scan, templates, embeddings): the part that runs on one core.
            "memesearch index, OCR off": lambda: run_memesearch_index(folder, args.models_dir, {"MEMESEARCH_OCR_ENABLED": "false"}),
        }
        # The estimate needs the default pipeline and the OCR-off row; the 1-process row is optional.
        rows = {name: run for name, run in all_rows.items() if not (args.skip_one_process and "1 OCR process" in name)}
        results = {}
        for repeat in range(args.repeats):
            for name, run in rows.items():
                load = os.getloadavg()[0]
                wall, cpu, texts = run()
                recall = (statistics.mean(word_recall(captions[str(f)], texts.get(str(f), "")) for f in files)
                          if captions and "OCR off" not in name else None)
                results.setdefault(name, []).append((wall, cpu, recall, load))
                print(f"  run {repeat + 1} {name}: {len(files) / wall:.2f} memes/s wall, {cpu / len(files) * 1000:.0f} ms CPU/meme,"
                      f" load {load:.1f}", flush=True)

    medians = {name: (statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs) / len(files),
                      runs[0][2], statistics.median(r[3] for r in runs)) for name, runs in results.items()}
    serial = medians["memesearch index, OCR off"][1]

    def idle_rate(name: str, cpu: float) -> float:
        """memes/s on an idle machine, estimated from CPU time. rapidocr and in-process OCR spin
        onnxruntime threads on every core, so their CPU time is cores x wall; memesearch index runs
        its non-OCR part on one core and OCR in one process per core."""
        if name == "memesearch index":
            return 1 / (serial + (cpu - serial) / cores)
        return cores / cpu

    print(f"\n{'':34} {'memes/s':>8} {'wall':>6} {'CPU ms':>7} {'memes/s':>8} {'ratio':>6} {'word':>7} {'load':>5}")
    print(f"{'':34} {'(wall)':>8} {'ratio':>6} {'/meme':>7} {'idle est':>8} {'(est)':>6} {'recall':>7} {'(1m)':>5}")
    base_rate = idle_rate("rapidocr default", medians["rapidocr default"][1])
    base_wall = medians["rapidocr default"][0]
    for name, (wall, cpu, recall, load) in medians.items():
        rate = idle_rate(name, cpu)
        recall_text = f"{recall:.3f}" if recall is not None else "-"
        print(f"{name:34} {len(files) / wall:>8.2f} {base_wall / wall:>5.2f}x {cpu * 1000:>7.0f} {rate:>8.2f}"
              f" {rate / base_rate:>5.2f}x {recall_text:>7} {load:>5.1f}")
    print(f"\n{cores} cores usable. wall ratio = rapidocr default's wall time / the row's (medians; the figure that"
          f" counts on a quiet machine). 'idle est' (for a shared machine): rapidocr default and in-process OCR ="
          f" cores / CPU s per meme; memesearch index = 1 / (CPU of the OCR-off run + rest of its CPU / cores);"
          f" ratio (est) = idle est / rapidocr default's.")

if __name__ == "__main__":
    main()
