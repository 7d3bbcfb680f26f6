"""What makes CLIP ViT-B/32's int8 image tower faster: graph variants side by side in one process.

Usage:
  .venv/bin/python bench/bench_clip_levers.py [--reps 12] [--threads 2] [--work /tmp/memesearch-bench-clip]

Uses the random-weight full-size model of bench/bench_clip.py (built there, cached in --work)
and times the image graph alone (preprocessed pictures; bench_clip.py times preprocessing too)
one image per call and in batches of 8. The variants run in turn, call after call, --reps
times, so a busy machine slows them alike; each is shown with its fastest and median call and
its CPU time (both threads; ORT's spinning waits count as CPU). Variants:

* shipped: what clip/onnx_backend.quantize_file writes (patch Conv as an int8 MatMul);
* patch Conv fp32: quantize_matmuls on the published graph (before clip/patch_matmul.py);
* fused: onnxruntime.transformers' CLIP fusions (LayerNorm, SkipLayerNorm, QuickGelu; no
  attention fusion) on the fp32 graph, then quantised;
* per-channel: per-channel 7-bit weights;
* no spinning: shipped, with session.intra_op.allow_spinning = 0;
* per-image scales: shipped, with every DynamicQuantizeLinear replaced by per-image min/max
  so that a batch's vectors equal one-per-call vectors (an experiment, not shipped).
"""

from __future__ import annotations

import argparse
import collections
import statistics
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))


def per_image_scales(source: Path, target: Path) -> None:
    """Quantise activations per image: ReduceMin/Max over all but the batch axis, zero points
    subtracted in int32 after MatMulInteger (its a_zero_point must be one scalar)."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    model = onnx.load(str(source))
    graph = model.graph
    weights = {t.name: t for t in graph.initializer}
    inferred = onnx.shape_inference.infer_shapes(model).graph
    rank = {v.name: len(v.type.tensor_type.shape.dim) for v in [*inferred.value_info, *inferred.input]}
    for name, value in (("pi/0", 0.0), ("pi/1", 1.0), ("pi/255", 255.0)):
        graph.initializer.append(numpy_helper.from_array(np.float32(value), name))
    nodes, zero_points = [], {}

    def add(op, inputs, output=None, **attributes):
        output = output or f"pi/{op}_{len(nodes)}"
        nodes.append(helper.make_node(op, inputs, [output], name=output, **attributes))
        return output

    for node in graph.node:
        if node.op_type == "DynamicQuantizeLinear":
            x, (q, scale, _) = node.input[0], node.output
            axes = list(range(1, rank[x]))
            low = add("Min", [add("ReduceMin", [x], axes=axes), "pi/0"])
            high = add("Max", [add("ReduceMax", [x], axes=axes), "pi/0"])
            raw = add("Div", [add("Sub", [high, low]), "pi/255"])
            scale = add("Where", [add("Equal", [raw, "pi/0"]), "pi/1", raw], scale)
            zero = add("Round", [add("Clip", [add("Neg", [add("Div", [low, scale])]), "pi/0", "pi/255"])])
            shifted = add("Add", [add("Round", [add("Div", [x, scale])]), zero])
            add("Cast", [add("Clip", [shifted, "pi/0", "pi/255"])], q, to=TensorProto.UINT8)
            zero_points[q] = add("Cast", [zero], to=TensorProto.INT32)
        elif node.op_type == "MatMulInteger" and node.input[0] in zero_points:
            column_sums = numpy_helper.to_array(weights[node.input[1]]).astype(np.int32).sum(axis=0).astype(np.int32)
            graph.initializer.append(numpy_helper.from_array(column_sums, node.name + "/column_sums"))
            raw = add("MatMulInteger", [node.input[0], node.input[1], "", node.input[3]])
            add("Sub", [raw, add("Mul", [zero_points[node.input[0]], node.name + "/column_sums"])], node.output[0])
        else:
            nodes.append(node)
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.save(model, str(target))


def build_variants(work: Path) -> dict[str, tuple[Path, dict]]:
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    import bench_clip
    from memesearch.ml.onnx_runtime.quantize import quantize_matmuls

    out = bench_clip.build(work)
    visual, levers = out / "visual", work / "levers"
    levers.mkdir(exist_ok=True)
    fp32, shipped = visual / "model.onnx", visual / "model_int8.onnx"
    if not (levers / "per_image.onnx").is_file():
        options = FusionOptions("clip")
        options.enable_attention = False  # attention fusion packs Q, K, V into one weight: other int8 results
        optimize_model(str(fp32), model_type="clip", num_heads=12, hidden_size=768, optimization_options=options,
                       opt_level=0).save_model_to_file(str(levers / "fused_fp32.onnx"))
        quantize_dynamic(str(levers / "fused_fp32.onnx"), str(levers / "fused.onnx"), op_types_to_quantize=["MatMul"],
                         weight_type=QuantType.QInt8, reduce_range=True, extra_options={"DefaultTensorType": 1})
        (levers / "fused_fp32.onnx").unlink()
        quantize_dynamic(str(fp32), str(levers / "per_channel.onnx"), op_types_to_quantize=["MatMul"],
                         weight_type=QuantType.QInt8, reduce_range=True, per_channel=True)
        quantize_matmuls(fp32, levers / "conv_fp32.onnx")
        per_image_scales(shipped, levers / "per_image.onnx")
    no_spin = {"session.intra_op.allow_spinning": "0"}
    return {
        "fp32 (reference for cosines)": (fp32, {}),
        "shipped": (shipped, {}),
        "patch Conv fp32 (before)": (levers / "conv_fp32.onnx", {}),
        "fused": (levers / "fused.onnx", {}),
        "per-channel": (levers / "per_channel.onnx", {}),
        "no spinning": (shipped, no_spin),
        "per-image scales": (levers / "per_image.onnx", {}),
        "per-image scales, no spinning": (levers / "per_image.onnx", no_spin),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=12)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", default="/tmp/memesearch-bench-clip")
    args = parser.parse_args()

    import numpy as np

    import bench_clip
    from memesearch.ml.families.clip.preprocess import preprocess_batch
    from memesearch.ml.onnx_runtime.session import onnxruntime

    ort = onnxruntime()
    variants = build_variants(Path(args.work))
    pixels = preprocess_batch(bench_clip.pictures(8))
    sessions = {}
    for label, (path, config) in variants.items():
        options = ort.SessionOptions()
        options.intra_op_num_threads, options.inter_op_num_threads = args.threads, 1
        options.log_severity_level = 3
        for key, value in config.items():
            options.add_session_config_entry(key, value)
        sessions[label] = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(label, batch):
        session = sessions[label]
        return session.run(None, {session.get_inputs()[0].name: batch})[0]

    one = {label: np.concatenate([run(label, pixels[i : i + 1]) for i in range(8)]) for label in sessions}
    batched = {label: run(label, pixels) for label in sessions}
    wall, cpu = collections.defaultdict(list), collections.defaultdict(list)
    print(f"load average before: {' '.join(f'{v:.1f}' for v in __import__('os').getloadavg())}")
    for _ in range(args.reps):
        for label in sessions:
            for batch in (1, 8):
                begin, begin_cpu = time.perf_counter(), time.process_time()
                run(label, pixels[:batch])
                wall[label, batch].append((time.perf_counter() - begin) * 1000 / batch)
                cpu[label, batch].append((time.process_time() - begin_cpu) * 1000 / batch)
    print(f"load average after: {' '.join(f'{v:.1f}' for v in __import__('os').getloadavg())}\n")
    fp32 = one["fp32 (reference for cosines)"]
    print("| graph | 1 per call: fastest (median) ms | CPU ms | batches of 8: fastest (median) ms/image | CPU ms/image "
          "| min cos vs fp32 | batch of 8 vs 1 per call: max abs diff |")
    print("|---|---|---|---|---|---|---|")
    for label in sessions:
        cosine = float(np.min(np.sum(one[label] * fp32, axis=1)))  # the graphs end in an L2 normalisation
        drift = float(np.abs(batched[label] - one[label]).max())
        cells = [f"{min(wall[label, b]):.1f} ({statistics.median(wall[label, b]):.1f}) | {statistics.median(cpu[label, b]):.1f}"
                 for b in (1, 8)]
        print(f"| {label} | {cells[0]} | {cells[1]} | {cosine:.5f} | {drift:.1e} |")


if __name__ == "__main__":
    main()
