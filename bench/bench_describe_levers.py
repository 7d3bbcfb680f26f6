"""Bulk describe levers, side by side in one run: concurrent caption streams sharing one set of
ONNX sessions, batch size, per-row (q4) weights, and where a meme's time goes.

Usage:
  .venv/bin/python bench/vlm_models.py smolvlm-256m --out /tmp/vlmspeed-cache      # build + export once
  .venv/bin/python bench/bench_describe_levers.py --models-dir /tmp/vlmspeed-cache \
      [--rows fp32:2:1:1 fp32:1:2:1 int8:2:1:1 ...] [--memes 8] [--tokens 32] [--repeats 1]

A row is DTYPE:THREADS:STREAMS:BATCH[:nospin|:spinalways]: the captioner's sessions open with THREADS
intra-op threads, whose idle threads spin during a run and stop at its end (the app's default),
never spin with :nospin, or keep spinning after a run too with :spinalways (onnxruntime's own
default, the app's before session 16; MEMESEARCH_SPIN in docs/CONFIGURATION.md), STREAMS threads caption batches
of BATCH memes concurrently through those same sessions (memesearch.ml.caption_streams, as
`describe all` runs it). DTYPE q4acc4 is the q4
decoder with MatMulNBits' accuracy_level set to 4 (int8 compute, A quantised per row and block);
int8pt is int8 with the per-tensor dynamic int8 decoder of before the per-row one (the old
default, and what the community int8 files hold); both are written next to the export once. Each row runs in its own process (peak RSS is its own); the
first row of each dtype is that dtype's reference: "same ids" compares every meme's token ids
with it, "vs ref" the memes per minute, "vs row 1" against the first row of the table. "vision / prompt / steps %" is the share of the wall time spent
in the vision encoder, the decoder's prompt run and its token steps (single-stream rows only). --memes memes, --tokens forced tokens (EOS ignored).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import weakref
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from worker_process import main_or_worker, print_header, run_worker  # noqa: E402


def variant_dir(onnx_dir: Path, name: str, graph: str, write) -> Path:
    """A copy of the export (links) next to it, named ``onnx-<name>``, whose ``onnx/<graph>`` is
    ``write(source graph path, target path)``'s instead. Made once."""
    target = onnx_dir.parent / f"onnx-{name}"
    graph_file = target / "onnx" / graph
    if graph_file.is_file():
        return target
    (target / "onnx").mkdir(parents=True, exist_ok=True)
    for path in onnx_dir.rglob("*"):
        link = target / path.relative_to(onnx_dir)
        if path.is_file() and link != graph_file and not link.exists():
            link.symlink_to(path)
    write(onnx_dir / "onnx", graph_file)
    return target


def q4_accuracy_dir(onnx_dir: Path, level: int) -> Path:
    """The export with its q4 decoder's MatMulNBits nodes at ``accuracy_level``."""
    import onnx

    def write(source: Path, graph_file: Path) -> None:
        model = onnx.load(str(source / "decoder_model_merged_q4.onnx"))

        def walk(graph) -> None:
            for node in graph.node:
                for attribute in node.attribute:
                    if node.op_type == "MatMulNBits" and attribute.name == "accuracy_level":
                        attribute.i = level
                    for sub in [attribute.g] * attribute.HasField("g") + list(attribute.graphs):
                        walk(sub)

        walk(model.graph)
        onnx.save(model, str(graph_file))

    return variant_dir(onnx_dir, f"q4acc{level}", "decoder_model_merged_q4.onnx", write)


def per_tensor_int8_dir(onnx_dir: Path) -> Path:
    """The export with the int8 decoder of before issue 16's bulk describe: dynamic int8 MatMuls,
    one activation scale per tensor (as the community int8 files), which cannot batch exactly."""
    from memesearch.ml.onnx_runtime.quantize import quantize_matmuls

    return variant_dir(onnx_dir, "int8pt", "decoder_model_merged_int8.onnx",
                       lambda source, graph_file: quantize_matmuls(source / "decoder_model_merged.onnx", graph_file))


def worker(spec: dict) -> dict:
    from bench_describe_batch import forced_captioner, measure

    captioner, requests = forced_captioner(spec)
    captioner.streams = spec["streams"]
    vision_s = []
    encode = captioner._image_features

    def timed(pixels):
        started = time.perf_counter()
        try:
            return encode(pixels)
        finally:
            vision_s.append(time.perf_counter() - started)

    captioner._image_features = timed
    decoder_s = {"prefill": 0.0, "steps": 0.0}

    class TimedDecoder:
        """The decoder session, timing its first run per batch (the prompt) apart from the steps."""

        def __init__(self, session) -> None:
            self.session = session
            self.bindings = weakref.WeakSet()  # a batch's binding dies with its batch

        def __getattr__(self, name):
            return getattr(self.session, name)

        def run(self, names, feed):
            started = time.perf_counter()
            try:
                return self.session.run(names, feed)
            finally:
                first = feed["past_key_values.0.key"].shape[2] == 0
                decoder_s["prefill" if first else "steps"] += time.perf_counter() - started

        def run_with_iobinding(self, binding, *args):
            # The GroupQueryAttention loop: one binding per batch, so its first run is the prompt.
            started = time.perf_counter()
            try:
                return self.session.run_with_iobinding(binding, *args)
            finally:
                first = binding not in self.bindings
                self.bindings.add(binding)
                decoder_s["prefill" if first else "steps"] += time.perf_counter() - started

    captioner.decoder = TimedDecoder(captioner.decoder)

    def reset() -> None:
        vision_s.clear()
        decoder_s.update(prefill=0.0, steps=0.0)

    result = measure(captioner, requests, spec["batch"] * spec["streams"], reset)
    one_stream = spec["streams"] == 1  # shares of wall time only mean something without overlap
    for key, seconds in (("vision_share", sum(vision_s)), ("prefill_share", decoder_s["prefill"]),
                         ("steps_share", decoder_s["steps"])):
        result[key] = seconds / result["seconds"] if one_stream else None
    return {**result, "vision_ms": 1000 * statistics.median(vision_s)}


def spin_env(flags: list[str]) -> dict[str, str]:
    """The worker's MEMESEARCH_SPIN for a row's flags (memesearch.ml.onnx_runtime.session.spin_mode)."""
    if "nospin" in flags:
        return {"MEMESEARCH_SPIN": "never"}
    if "spinalways" in flags:
        return {"MEMESEARCH_SPIN": "always"}
    return {"MEMESEARCH_SPIN": "run"}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smolvlm-256m")
    parser.add_argument("--models-dir", type=Path, default=HERE / "out" / "models")
    parser.add_argument("--rows", nargs="+", default=["fp32:2:1:1", "fp32:2:1:4", "fp32:1:2:1", "fp32:1:2:2",
                                                      "int8:2:1:1", "int8:1:2:1"])
    parser.add_argument("--memes", type=int, default=8)
    parser.add_argument("--tokens", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=1, help="runs of each row, interleaved; the median counts")
    args = parser.parse_args()
    from bench_vlm import PROMPTS

    print_header("bulk describe levers")
    onnx_dir = (args.models_dir / args.model / "onnx").resolve()
    results: dict[str, list] = {}
    for _ in range(args.repeats):
        for row in args.rows:
            dtype, threads, streams, batch, *flags = row.split(":")
            models = onnx_dir
            if dtype.startswith("q4acc"):
                models, dtype = q4_accuracy_dir(onnx_dir, int(dtype[5:])), "q4"
            elif dtype == "int8pt":
                models, dtype = per_tensor_int8_dir(onnx_dir), "int8"
            spec = {"models": str(models), "dtype": dtype, "threads": int(threads), "streams": int(streams),
                    "batch": int(batch), "memes": args.memes, "tokens": args.tokens, "prompt": PROMPTS["smolvlm"]}
            load_before = os.getloadavg()[0]
            result = run_worker(Path(__file__), spec, int(threads), spin_env(flags))
            if isinstance(result, str):
                print(f"{row}: {result}", flush=True)
                continue
            result["load_before"] = load_before
            results.setdefault(row, []).append(result)
            print(f"{row}: {result['memes_per_min']:.2f} memes/min, vision {result['vision_ms']:.0f} ms/meme, "
                  f"peak RSS {result['peak_rss_mb']} MB, load {load_before:.2f}/{result['load1']:.2f}", flush=True)
    print(f"\n| dtype | intra-op threads | streams | batch per stream | memes/min (median of {args.repeats}) | vs ref | "
          "vs row 1 | each run | same ids as ref | vision ms/meme | 1 stream: vision / prompt / steps % | peak RSS MB | load1 |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    references: dict[str, list] = {}
    first = statistics.median(r["memes_per_min"] for r in next(iter(results.values()))) if results else 0
    for row, runs in results.items():
        dtype, threads, streams, batch, *flags = row.split(":")
        threads += " (no spin)" if "nospin" in flags else " (spin after runs)" if "spinalways" in flags else ""
        reference = references.setdefault(dtype, runs)
        speed = statistics.median(r["memes_per_min"] for r in runs)
        ratio = speed / statistics.median(r["memes_per_min"] for r in reference)
        same = all(r["ids"] == reference[0]["ids"] for r in runs)
        shares = [runs[0].get(key) for key in ("vision_share", "prefill_share", "steps_share")]
        share = None if shares[0] is None else " / ".join("%.0f" % (100 * value) for value in shares)
        loads = [value for r in runs for value in (r["load_before"], r["load1"])]
        print(f"| {dtype} | {threads} | {streams} | {batch} | {speed:.2f} | {ratio:.2f}x | {speed / first:.2f}x | "
              f"{' '.join('%.1f' % r['memes_per_min'] for r in runs)} | {'yes' if same else 'NO'} | "
              f"{statistics.median(r['vision_ms'] for r in runs):.0f} | {share or ''} | "
              f"{max(r['peak_rss_mb'] for r in runs)} | {min(loads):.1f}-{max(loads):.1f} |")


if __name__ == "__main__":
    main_or_worker(worker, main)
