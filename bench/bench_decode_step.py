"""One SmolVLM decode step, call by call: ``session.run`` against I/O binding, and decoders against each other.

    python bench/bench_decode_step.py --models-dir /tmp/vlmspeed-cache --dtypes int8 q4 --calls 150
    python bench/bench_decode_step.py --models-dir /tmp/gqa-cache --baseline-dir /tmp/vlmspeed-cache --dtypes int8

The same decoder session runs the same step (one new token after ``--past`` cached positions,
random inputs) alternately both ways, so machine load hits both alike; prints the medians.
With several ``--dtypes`` it then runs their decoders on that step in turn (order reversed
every call) and prints each one's median against the first's; ``--baseline-dir`` adds the
decoders of another export (e.g. the traced community-style graph against the GroupQueryAttention
one, smolvlm/decoder_graph.py) to that comparison.
``run`` copies every present.* output (the whole KV cache) into new numpy arrays; with I/O
binding they stay OrtValues, as in the captioner's loop (OnnxSmolVLMCaptioner.io_binding).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from machine import machine_line  # noqa: E402

from memesearch.ml.families.smolvlm.assets import SmolVLMConfig, onnx_path  # noqa: E402
from memesearch.ml.onnx_runtime.session import onnxruntime, open_session  # noqa: E402


def step_feed(config: SmolVLMConfig, session, past: int) -> dict:
    """One new token after ``past`` cached ones, in the inputs of ``session``'s kind of decoder."""
    rng = np.random.default_rng(0)
    inputs = {node.name: node for node in session.get_inputs()}
    hidden = inputs["inputs_embeds"].shape[-1]
    feed = {"inputs_embeds": rng.standard_normal((1, 1, hidden)).astype(np.float32)}
    if "seqlens_k" in inputs:  # the GroupQueryAttention decoder
        feed.update(seqlens_k=np.array([past], np.int32), total_sequence_length=np.array(past + 1, np.int32))
    else:
        feed.update(attention_mask=np.ones((1, past + 1), np.int64), position_ids=np.array([[past]], np.int64))
    for layer in range(config.num_layers):
        for kind in ("key", "value"):
            shape = (1, config.num_kv_heads, past, config.head_dim)
            feed[f"past_key_values.{layer}.{kind}"] = rng.standard_normal(shape).astype(np.float32)
    return feed


def compare(model_dir: Path, dtype: str, past: int, calls: int, threads: int) -> str:
    ort = onnxruntime()
    session = open_session(model_dir / onnx_path("decoder_model_merged", dtype), threads=threads, low_memory=True)
    config = SmolVLMConfig.from_dir(model_dir)
    feed = step_feed(config, session, past)
    outputs = [node.name for node in session.get_outputs()]
    as_ort = {name: ort.OrtValue.ortvalue_from_numpy(value) for name, value in feed.items() if name.startswith("past")}

    def plain():
        return session.run(outputs, feed)[0]

    def bound():
        binding = session.io_binding()
        for name, value in feed.items():
            if name in as_ort:
                binding.bind_ortvalue_input(name, as_ort[name])
            else:
                binding.bind_cpu_input(name, value)
        for name in outputs:
            binding.bind_output(name, "cpu")
        session.run_with_iobinding(binding)
        return binding.get_outputs()[0].numpy()

    assert np.array_equal(plain(), bound())
    times = {plain: [], bound: []}
    for call in range(calls):
        for run in (plain, bound) if call % 2 else (bound, plain):
            started = time.perf_counter()
            run()
            times[run].append(time.perf_counter() - started)
    ms_plain, ms_bound = (1000 * statistics.median(times[run]) for run in (plain, bound))
    return (f"| {dtype} | {past} | {ms_plain:.2f} | {ms_bound:.2f} | {ms_bound / ms_plain:.3f} | {calls} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models-dir", type=Path, default=Path("/tmp/vlmspeed-cache"))
    parser.add_argument("--model", default="smolvlm-256m")
    parser.add_argument("--dtypes", nargs="+", default=["int8"])
    parser.add_argument("--past", type=int, default=168, help="cached positions (a 512-px meme's prompt + 32 tokens ~ 170)")
    parser.add_argument("--calls", type=int, default=150)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--baseline-dir", type=Path, help="a second models dir whose decoders join the comparison")
    args = parser.parse_args()
    print(machine_line(), flush=True)
    print("| dtype | past | run() ms | I/O binding ms | ratio | calls each |\n|---|---|---|---|---|---|")
    model_dir = (args.models_dir / args.model / "onnx").resolve()
    folders = [model_dir]
    decoders = [(dtype, model_dir, dtype) for dtype in args.dtypes]
    if args.baseline_dir:
        baseline = (args.baseline_dir / args.model / "onnx").resolve()
        folders.append(baseline)
        decoders += [(f"{dtype} ({args.baseline_dir})", baseline, dtype) for dtype in args.dtypes]
    for folder in folders:  # one session at a time
        for dtype in args.dtypes:
            print(compare(folder, dtype, args.past, args.calls, args.threads), folder, flush=True)
    if len(decoders) > 1:
        print(across(decoders, args.past, args.calls, args.threads))


def across(decoders: list[tuple[str, Path, str]], past: int, calls: int, threads: int) -> str:
    """(label, models dir, dtype) decoders run on the same step in turn; medians against the first."""
    runs = {}
    for label, model_dir, dtype in decoders:
        session = open_session(model_dir / onnx_path("decoder_model_merged", dtype), threads=threads, low_memory=True)
        runs[label] = (session, step_feed(SmolVLMConfig.from_dir(model_dir), session, past))
    labels = list(runs)
    times = {label: [] for label in labels}
    for call in range(calls):
        for label in labels if call % 2 else labels[::-1]:
            session, feed = runs[label]
            started = time.perf_counter()
            session.run(None, feed)
            times[label].append(time.perf_counter() - started)
    first = statistics.median(times[labels[0]])
    lines = [f"\n| decoder (run(), in turn) | ms per step | vs {labels[0]} |", "|---|---|---|"]
    lines += [f"| {label} | {1000 * statistics.median(t):.2f} | {statistics.median(t) / first:.3f}x |"
              for label, t in times.items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
