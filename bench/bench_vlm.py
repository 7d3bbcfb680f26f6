"""Image-to-text speed and memory: torch fp32 vs ONNX Runtime fp32 vs ONNX Runtime int8.

Usage:
  .venv/bin/python bench/vlm_models.py smolvlm-256m florence-2-base   # build + export once
  .venv/bin/python bench/bench_vlm.py [--models smolvlm-256m ...] [--runs 3] [--threads 2]
  .venv/bin/python bench/bench_vlm.py --models moondream2 --backends onnx:int8   # one backend
  .venv/bin/python bench/bench_vlm.py --backends onnx:int8:always onnx:int8     # a backend:dtype[:MEMESEARCH_SPIN]

Full-size RANDOM-weight models with the real configurations (bench/vlm_models.py; compute does
not depend on weight values), exported with our own exporters (memesearch/ml/families/*/export.py), run
through our ONNX captioners and torch backends (for moondream2, whose hub model is remote code,
the torch baseline is our own torch modules with its shapes: memesearch.ml.families.moondream.tiny). Every backend runs in its own subprocess
(bench/vlm_worker.py) so peak RSS (ru_maxrss at the end) is that backend's alone; each reports
medians over --runs runs after --warmup warm-up runs, for one 640x480 meme, forcing exactly
--tokens decoded tokens (EOS ignored) after the prefill. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from machine import machine_line  # noqa: E402
from vlm_models import FAMILIES  # noqa: E402

PROMPTS = {  # the models.yml defaults
    "smolvlm": "Describe this meme in one or two short sentences. Include any visible text exactly as written.",
    "florence2": "<MORE_DETAILED_CAPTION>",
    "moondream": "Describe this meme in one or two short sentences, including any visible text.",
}
BACKENDS = [("torch", "fp32"), ("onnx", "fp32"), ("onnx", "int8")]
#: Florence-2 as meme-search runs it (transformers fp32, num_beams=3, loaded for every image):
#: run first for every Florence-2 model, so users see the speed-up against what they run today.
MEME_SEARCH = "meme-search:fp32"


def machine_facts() -> dict:
    cpu = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    versions = {name: metadata.version(name) for name in ("torch", "transformers", "onnxruntime", "onnx", "numpy")}
    return {"cpu": cpu, "cores": os.cpu_count(), "python": platform.python_version(), **versions}


def run_worker(spec: dict) -> dict:
    command = [sys.executable, str(HERE / "vlm_worker.py"), json.dumps(spec)]
    env = {**os.environ, "OMP_NUM_THREADS": str(spec["threads"]), "TOKENIZERS_PARALLELISM": "false",
           **({"MEMESEARCH_SPIN": spec["spin"]} if spec.get("spin") else {})}
    load_before = os.getloadavg()[0]
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return {**json.loads(line[7:]), "load_before": load_before}
    return {"error": (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]}


def settings_for(model: str, edges: list[str]) -> list[int | None]:
    if FAMILIES[model] != "smolvlm":
        return [None]
    return [None if edge == "default" else int(edge) for edge in edges]


def setting_label(model: str, edge: int | None, width: int, height: int) -> str:
    if FAMILIES[model] == "smolvlm":
        return "2048 px, tiles" if edge is None else f"{edge} px, 1 tile"
    if FAMILIES[model] == "moondream":
        from memesearch.ml.families.moondream.preprocess import CROP_SIZE, choose_grid

        rows, cols = choose_grid(width, height)
        crops = 1 if (rows, cols) == (1, 1) else 1 + rows * cols
        return f"{CROP_SIZE} px, {crops} crops"
    return "default"


def table(rows: list[dict], tokens: int) -> str:
    head = (f"| model | image setting | backend | vision ms | prefill ms | {tokens}-token decode ms | tok/s | "
            "other ms | end-to-end ms (median) | e2e min ms | vs torch | peak RSS MB | load1 before/after |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for row in rows:
        r = row["result"]
        if "error" in r:
            lines.append(f"| {row['model']} | {row['setting']} | {row['backend']} | error: {r['error'][0][:120]} |")
            continue
        lines.append(
            f"| {row['model']} | {row['setting']} | {row['backend']} | {r['vision_ms']:.0f} | {r['prefill_ms']:.0f} | "
            f"{r['decode_ms']:.0f} | {r['tokens_per_s']:.1f} | {r['other_ms']:.0f} | {r['e2e_ms']:.0f} | {min(r['e2e_all_ms'])} | "
            f"{row.get('speedup', '')} | {r['peak_rss_mb']} | {r['load_before']:.2f}/{r['load1']:.2f} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["smolvlm-256m", "smolvlm-500m", "florence-2-base"],
                        choices=sorted(FAMILIES))
    parser.add_argument("--models-dir", type=Path, default=HERE / "out" / "models")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--image-size", default="640x480")
    parser.add_argument("--smolvlm-edges", nargs="+", default=["default", "512"],
                        help="SmolVLM image_longest_edge settings: 'default' (2048 -> tiles) and/or pixels")
    parser.add_argument("--backends", nargs="+", default=[f"{b}:{d}" for b, d in BACKENDS])
    parser.add_argument("--no-meme-search", action="store_true",
                        help="skip the Florence-2 row as meme-search runs it (beam search, loaded per image)")
    parser.add_argument("--json-out", type=Path, default=HERE / "out" / "bench_vlm.json")
    parser.add_argument("--table-from", type=Path, nargs="+", help="only print the table of saved --json-out files")
    args = parser.parse_args()
    if args.table_from:
        saved = [json.loads(path.read_text()) for path in args.table_from]
        print(table([row for run in saved for row in run["rows"]], saved[0]["args"]["tokens"]))
        return

    facts = machine_facts()
    print(f"# VLM benchmark  {time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}")
    print("machine: " + machine_line())
    print("versions: " + ", ".join(f"{key}={value}" for key, value in facts.items()))
    print(f"command: {' '.join([Path(sys.executable).name, *sys.argv])}\n", flush=True)
    width, height = (int(v) for v in args.image_size.split("x"))
    rows = []
    for model in args.models:
        for edge in settings_for(model, args.smolvlm_edges):
            setting = setting_label(model, edge, width, height)
            torch_e2e = meme_search_e2e = None
            backends = args.backends
            if FAMILIES[model] == "florence2" and not args.no_meme_search and MEME_SEARCH not in backends:
                backends = [MEME_SEARCH, *backends]
            for backend_dtype in backends:
                backend, dtype, *spin = backend_dtype.split(":")
                spec = {"model": model, "family": FAMILIES[model], "backend": backend, "dtype": dtype, "spin": "".join(spin),
                        "threads": args.threads, "runs": args.runs, "warmup": args.warmup, "tokens": args.tokens,
                        "image_size": [width, height], "prompt": PROMPTS[FAMILIES[model]], "longest_edge": edge,
                        "models_dir": str(args.models_dir)}
                result = run_worker(spec)
                label = f"{backend} {dtype}" + (f" (MEMESEARCH_SPIN={spin[0]})" if spin else "")
                row = {"model": model, "setting": setting, "backend": label, "result": result}
                if "error" not in result:
                    if backend == "meme-search":
                        row["speedup"] = "(meme-search today)"
                        meme_search_e2e = result["e2e_ms"]
                    elif backend == "torch":
                        torch_e2e = result["e2e_ms"]
                    if torch_e2e and backend != "meme-search":
                        row["speedup"] = f"{torch_e2e / result['e2e_ms']:.2f}x"
                    if meme_search_e2e and backend != "meme-search":
                        row["speedup"] = row.get("speedup", "") + f" ({meme_search_e2e / result['e2e_ms']:.1f}x vs meme-search)"
                rows.append(row)
                print(f"{model} [{setting}] {backend} {dtype}: {json.dumps(result)}", flush=True)
    print()
    print(table(rows, args.tokens))
    args.json_out.parent.mkdir(parents=True, exist_ok=True)
    args.json_out.write_text(json.dumps({"machine": facts, "args": vars(args) | {"models_dir": str(args.models_dir),
                                         "json_out": str(args.json_out)}, "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
