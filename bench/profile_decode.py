"""Where one SmolVLM decode step spends its time: ORT operators by type, and the Python loop around them.

    python bench/profile_decode.py --models-dir /tmp/vlmspeed-cache --dtypes int8 q4 --steps 32
    python bench/profile_decode.py --models-dir /tmp/gqa-cache --baseline-dir /tmp/vlmspeed-cache --dtypes int8

Runs our ONNX captioner (one 512-px tile, as models.yml does) on the benchmark meme with EOS
disabled and records every decoder call. Prints:

- the loop's time split per decode step: decoder ``run``, the embed graph, and everything else
  (feeds, KV dict, argmax, mask growth: the Python/numpy overhead), medians of ``--rounds``
  captions; several ``--dtypes`` alternate round by round in one process;
- one decode step (the feed of step ``--profile-step``) re-run ``--repeats`` times in a session
  with ORT's profiler on, its kernel time grouped by operator type.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import replace
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from machine import machine_line  # noqa: E402
from bench_vlm import PROMPTS  # noqa: E402
from vlm_worker import meme_image  # noqa: E402

from memesearch.ml.base import CaptionRequest  # noqa: E402
from memesearch.ml.families.smolvlm.assets import onnx_path  # noqa: E402
from memesearch.ml.families.smolvlm.onnx_backend import OnnxSmolVLMCaptioner  # noqa: E402
from memesearch.ml.onnx_runtime.session import onnxruntime  # noqa: E402


class Recorder:
    """Times each ``run`` of a session and keeps the feeds."""

    def __init__(self, session) -> None:
        self._session, self.seconds, self.feeds = session, [], []

    def run(self, output_names, feed, *args):
        self.feeds.append(dict(feed))
        started = time.perf_counter()
        result = self._session.run(output_names, feed, *args)
        self.seconds.append(time.perf_counter() - started)
        return result

    def run_with_iobinding(self, binding, *args):  # the GQA loop's shared KV buffers: timed, no feed kept
        started = time.perf_counter()
        result = self._session.run_with_iobinding(binding, *args)
        self.seconds.append(time.perf_counter() - started)
        return result

    def __getattr__(self, name):
        return getattr(self._session, name)


def loop_split(captioner: OnnxSmolVLMCaptioner, steps: int) -> tuple[dict, Recorder]:
    request = CaptionRequest(image=meme_image(), prompt=PROMPTS["smolvlm"], max_new_tokens=steps)
    decoder, embed = Recorder(captioner.decoder), Recorder(captioner.embed)
    captioner.decoder, captioner.embed = decoder, embed
    started_at = {}
    loop = "_greedy_gqa" if captioner._gqa else "_greedy"  # which loop the decoder's inputs call for
    original_greedy = getattr(captioner, loop)

    def timed_greedy(*args, **kwargs):
        started_at["greedy"] = time.perf_counter()
        result = original_greedy(*args, **kwargs)
        started_at["greedy_s"] = time.perf_counter() - started_at["greedy"]
        return result

    setattr(captioner, loop, timed_greedy)
    captioner.generate_ids([request])
    captioner.decoder, captioner.embed = decoder._session, embed._session
    setattr(captioner, loop, original_greedy)
    # The first decoder call is the prefill; the embed call before it is the prompt's.
    decode_s = decoder.seconds[1:]
    embed_s = embed.seconds[1:]
    loop_s = started_at["greedy_s"] - decoder.seconds[0]
    n = len(decode_s)
    split = {
        "decode_steps": n,
        "prefill_ms": 1000 * decoder.seconds[0],
        "decoder_run_ms": 1000 * sum(decode_s) / n,
        "decoder_run_median_ms": 1000 * statistics.median(decode_s),
        "embed_ms": 1000 * sum(embed_s) / n,
        "python_overhead_ms": 1000 * (loop_s - sum(decode_s) - sum(embed_s)) / n,
        "step_ms": 1000 * loop_s / n,
    }
    split["tok_per_s"] = 1000 / split["step_ms"]
    return split, decoder


def profile_ops(model: Path, feed: dict, threads: int, repeats: int) -> dict:
    ort = onnxruntime()
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.enable_mem_pattern = False
    with tempfile.TemporaryDirectory() as folder:
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(folder) / "decode")
        session = ort.InferenceSession(str(model), options, providers=["CPUExecutionProvider"])
        for _ in range(repeats):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
    by_type, nodes, total = defaultdict(float), defaultdict(int), 0.0
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            by_type[event["args"]["op_name"]] += event["dur"]
            nodes[event["args"]["op_name"]] += 1
            total += event["dur"]
    runs = [e["dur"] for e in events if e.get("name") == "model_run"]
    return {
        "model_run_ms": statistics.median(runs) / 1000 if runs else None,
        "kernels_ms": total / repeats / 1000,
        "kernels_per_step": sum(nodes.values()) // repeats,
        "by_op_ms_and_nodes": {op: (round(us / repeats / 1000, 3), nodes[op] // repeats)
                               for op, us in sorted(by_type.items(), key=lambda kv: -kv[1])},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=Path("/tmp/vlmspeed-cache"))
    parser.add_argument("--model", default="smolvlm-256m")
    parser.add_argument("--dtypes", nargs="+", default=["int8"], help="several: their rounds alternate in one process")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--profile-step", type=int, default=16)
    parser.add_argument("--repeats", type=int, default=20, help="runs of the profiled step (0: no op profile)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--kv-copy", action="store_true",
                        help="GroupQueryAttention decoders also with the KV cache copied each step (no shared buffer)")
    parser.add_argument("--baseline-dir", type=Path,
                        help="a second models dir (e.g. the traced decoders): its captioners alternate with these")
    args = parser.parse_args()
    print(machine_line(), flush=True)
    model_dir = (args.models_dir / args.model / "onnx").resolve()
    runs = {dtype: (model_dir, dtype, True) for dtype in args.dtypes}
    if args.kv_copy:
        runs.update({f"{dtype} (KV copied)": (model_dir, dtype, False) for dtype in args.dtypes})
    if args.baseline_dir:
        baseline = (args.baseline_dir / args.model / "onnx").resolve()
        runs.update({f"{dtype} ({args.baseline_dir})": (baseline, dtype, True) for dtype in args.dtypes})
    captioners = {}
    for label, (folder, dtype, shared) in runs.items():
        captioner = OnnxSmolVLMCaptioner(folder, dtype=dtype, threads=args.threads, image_longest_edge=512)
        captioner.share_kv_buffer = shared
        captioner.ensure_loaded()
        captioner.config = replace(captioner.config, eos_token_ids=())  # always decode --steps tokens
        captioner.generate_ids([CaptionRequest(image=meme_image(), prompt=PROMPTS["smolvlm"], max_new_tokens=4)])
        captioners[label] = captioner
    splits, feeds = {label: [] for label in runs}, {}
    for _ in range(args.rounds):
        for label, rounds in splits.items():
            split, decoder = loop_split(captioners[label], args.steps)
            rounds.append(split)
            feeds[label] = feeds.get(label) or decoder.feeds
    for label, rounds in splits.items():
        median = {key: round(statistics.median(run[key] for run in rounds), 3) for key in rounds[0]}
        print(json.dumps({"decoder": label, "median_of_rounds_per_step": median}), flush=True)
    for label, (folder, dtype, shared) in runs.items() if args.repeats and shared else ():
        if not feeds[label]:  # bound KV buffers leave no feeds: record them from a run() loop
            captioners[label].share_kv_buffer = False
            feeds[label] = loop_split(captioners[label], args.steps)[1].feeds
        feed = feeds[label][min(args.profile_step, len(feeds[label]) - 1)]
        past = feed["past_key_values.0.key"].shape[2]
        report = profile_ops(folder / onnx_path("decoder_model_merged", dtype), feed, args.threads, args.repeats)
        print(json.dumps({"decoder": label, "profiled_step": {"past_length": past, **report}}))


if __name__ == "__main__":
    main()
