"""SmolVLM's int8 vision encoder with and without the attention fusion, side by side in one process.

Usage:
  .venv/bin/python bench/bench_vision_attention.py --model-dir /tmp/vlmspeed-cache/smolvlm-256m/onnx
      [--reps 5] [--threads 2] [--work /tmp/memesearch-bench-vision]

Derives from the fp32 ``onnx/vision_encoder.onnx`` of an exported SmolVLM folder (e.g. the
random-weight full-size cache of bench/bench_vlm.py) three int8 graphs, and times one 512 px
tile a call (as OnnxSmolVLMCaptioner runs it), the variants in turn, call after call:

* unfused: quantize_matmuls alone (int8 graphs derived before the fusion);
* MHA + mask: ml/onnx_runtime/attention_fusion.py keeping the patch mask;
* shipped: what smolvlm/export.quantize_vision writes (MHA without the mask: ORT's CPU flash
  attention);
* + FastGelu: shipped, then onnxruntime.transformers' FastGelu and SkipLayerNormalization
  fusions (fp32 ops only; measured no gain, not shipped).

Prints the median wall and CPU time of each (CPU counts both threads) and the largest
difference of its features from the unfused graph's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def derive(model_dir: Path, work: Path) -> dict[str, Path]:
    import onnx

    from memesearch.ml.families.smolvlm.export import quantize_vision
    from memesearch.ml.onnx_runtime.attention_fusion import fuse_attention
    from memesearch.ml.onnx_runtime.quantize import quantize_matmuls

    work.mkdir(parents=True, exist_ok=True)
    paths = {"unfused": work / "unfused.onnx", "MHA + mask": work / "mha_mask.onnx", "shipped": work / "shipped.onnx",
             "+ FastGelu": work / "fastgelu.onnx"}
    quantize_matmuls(model_dir / "onnx/vision_encoder.onnx", paths["unfused"])
    heads = json.loads((model_dir / "config.json").read_text())["vision_config"]["num_attention_heads"]
    model = onnx.load(str(paths["unfused"]))
    fuse_attention(model, heads)
    onnx.save(model, str(paths["MHA + mask"]))
    quantize_vision(model_dir, paths["shipped"])
    onnx.save(fuse_gelu_and_norms(onnx.load(str(paths["shipped"]))), str(paths["+ FastGelu"]))
    return paths


def fuse_gelu_and_norms(model):
    """onnxruntime.transformers' FastGelu and SkipLayerNormalization fusions; its attention fusion
    stays off (it would merge the Q/K/V projections into one MatMul with one weight scale)."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_by_fusion

    options = FusionOptions("bert")
    options.enable_attention = False
    options.enable_embed_layer_norm = False
    return optimize_by_fusion(model, "bert", optimization_options=options).model


def main() -> None:
    import numpy as np
    import onnxruntime as ort

    from machine import machine_line

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model-dir", type=Path, required=True)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", type=Path, default=Path("/tmp/memesearch-bench-vision"))
    args = parser.parse_args()
    print(machine_line(), flush=True)

    paths = derive(args.model_dir, args.work)
    options = ort.SessionOptions()
    options.intra_op_num_threads = args.threads
    sessions = {name: ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
                for name, path in paths.items()}
    size = json.loads((args.model_dir / "config.json").read_text())["vision_config"]["image_size"]
    feed = {"pixel_values": np.random.default_rng(0).standard_normal((1, 1, 3, size, size)).astype(np.float32),
            "pixel_attention_mask": np.ones((1, 1, size, size), np.bool_)}
    outputs = {name: session.run(None, feed)[0] for name, session in sessions.items()}  # also the warm-up
    times: dict[str, list[tuple[float, float]]] = {name: [] for name in sessions}
    for _ in range(args.reps):
        for name, session in sessions.items():
            wall, cpu = time.perf_counter(), time.process_time()
            session.run(None, feed)
            times[name].append((1000 * (time.perf_counter() - wall), 1000 * (time.process_time() - cpu)))
    base = statistics.median(cpu for _, cpu in times["unfused"])
    print(f"{'graph':12} {'wall ms':>8} {'cpu ms':>8} {'cpu vs unfused':>15} {'max |diff|':>11}")
    for name, runs in times.items():
        wall, cpu = statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs)
        diff = float(np.abs(outputs[name] - outputs["unfused"]).max())
        print(f"{name:12} {wall:8.0f} {cpu:8.0f} {cpu / base:14.2f}x {diff:11.4f}")


if __name__ == "__main__":
    main()
