"""How far SmolVLM captions can go on this CPU: GEMM rates, the vision encoder as it ships and as
8-bit ``MatMulNBits``, and the decoder's prompt run through the per-tensor and the per-row int8 graph.

Usage:
  .venv/bin/python bench/vlm_models.py smolvlm-256m --out DIR                 # build + export once
  .venv/bin/python bench/bench_caption_ceiling.py --model-dir DIR/smolvlm-256m/onnx \
      [--per-tensor-dir DIR/smolvlm-256m/onnx-int8pt] [--reps 6] [--prompt 153]

Three parts, each timed in this one process (2 intra-op threads, medians of --reps after a
warm-up run), sessions opened as the app opens them (memesearch.ml.onnx_runtime.session):

* **GEMM rates**: one 1024x768 @ 768x3072 product (a vision MLP's shape for one 512-px tile) as a
  single-node fp32 ``MatMul`` and int8 ``DynamicQuantizeMatMul`` graph: what onnxruntime reaches on
  this CPU, to set the vision encoder's time against;
* **vision encoder**, one 512-px tile: the shipped ``vision_encoder_int8.onnx`` against the same fp32
  graph with its MatMuls as 8-bit ``MatMulNBits`` (blocks of 32, ``accuracy_level=4``: activations
  quantised per row, which would let tiles of several memes batch exactly), both with the attention
  fused as the app ships it; the variant is written once under --work;
* **prompt run** (the decoder's first call, ``--prompt`` tokens, shared KV buffers as the captioner
  binds them), right after a vision run, for 1 and 8 prompts at once, through the per-row int8
  decoder of --model-dir and the per-tensor one of --per-tensor-dir (bench_describe_levers.py's
  ``int8pt`` folder; left out when missing).

The vision encoder's operation count (int8 projections, fp32 attention products) is printed
from its config, so its time can be set against the GEMM rates.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from machine import machine_line  # noqa: E402

from memesearch.ml.onnx_runtime.session import onnxruntime, open_session  # noqa: E402

TILE = 512


def median_ms(run, reps: int) -> float:
    run()  # warm-up: first-run allocations and prepacking
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        run()
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times)


def gemm_rates(reps: int) -> dict[str, float]:
    """GFLOP/s (fp32) and GOP/s (int8) of one vision-MLP-sized product in single-node graphs."""
    from onnx import TensorProto, helper, numpy_helper

    ort = onnxruntime()
    rows, inner, cols = 1024, 768, 3072
    rng = np.random.default_rng(0)
    x = rng.standard_normal((rows, inner)).astype(np.float32)
    graphs = {
        "fp32 MatMul": (helper.make_node("MatMul", ["x", "w"], ["y"]),
                        [numpy_helper.from_array(rng.standard_normal((inner, cols)).astype(np.float32), "w")]),
        "int8 DynamicQuantizeMatMul": (
            helper.make_node("DynamicQuantizeMatMul", ["x", "w", "scale"], ["y"], domain="com.microsoft"),
            [numpy_helper.from_array(rng.integers(-127, 128, (inner, cols)).astype(np.int8), "w"),
             numpy_helper.from_array(np.array(0.01, np.float32), "scale")]),
    }
    rates = {}
    for name, (node, weights) in graphs.items():
        graph = helper.make_graph([node], "gemm", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [rows, inner])],
                                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, [rows, cols])], weights)
        model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)])
        options = ort.SessionOptions()
        options.intra_op_num_threads = 2
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
        seconds = median_ms(lambda: session.run(None, {"x": x}), reps) / 1000
        rates[name] = 2 * rows * inner * cols / seconds / 1e9
    return rates


def vision_operations(config: dict) -> tuple[float, float]:
    """(int8 projection GOP, fp32 attention GFLOP) of one tile through the vision encoder."""
    vision = config["vision_config"]
    hidden, layers, inner = vision["hidden_size"], vision["num_hidden_layers"], vision["intermediate_size"]
    patches = (TILE // vision["patch_size"]) ** 2
    projections = layers * patches * (4 * hidden * hidden + 2 * hidden * inner) * 2
    attention = layers * 2 * patches * patches * hidden * 2  # QK^T and ·V over all heads
    return projections / 1e9, attention / 1e9


def nbits_vision(model_dir: Path, work: Path, heads: int) -> Path:
    """The fp32 vision encoder with 8-bit MatMulNBits (blocks of 32, accuracy_level 4), attention fused."""
    import onnx

    from memesearch.ml.onnx_runtime.attention_fusion import fuse_attention
    from memesearch.ml.onnx_runtime.quantize import Q8_ACCURACY_LEVEL, Q8_BLOCK_SIZE, quantize_matmuls_nbits

    target = work / "vision_encoder_nbits8.onnx"
    if not target.is_file():
        work.mkdir(parents=True, exist_ok=True)
        quantize_matmuls_nbits(model_dir / "onnx" / "vision_encoder.onnx", target, bits=8, block_size=Q8_BLOCK_SIZE,
                               symmetric=True, accuracy_level=Q8_ACCURACY_LEVEL)
        model = onnx.load(str(target))
        fuse_attention(model, heads, without_mask=True)
        onnx.save(model, str(target))
    return target


def tile_feed() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(1)
    return {"pixel_values": rng.standard_normal((1, 1, 3, TILE, TILE)).astype(np.float32),
            "pixel_attention_mask": np.ones((1, 1, TILE, TILE), dtype=np.bool_)}


def prompt_run_ms(decoder_path: Path, vision, model_dir: Path, batch: int, tokens: int, reps: int) -> float:
    """The decoder's prompt run for ``batch`` prompts of ``tokens``, bound to KV buffers as the captioner
    binds them (onnx_backend._SharedKVCache), each timed right after a vision run (``vision``; None:
    back to back)."""
    from memesearch.ml.families.smolvlm.assets import SmolVLMConfig
    from memesearch.ml.families.smolvlm.onnx_backend import _SharedKVCache

    decoder = open_session(decoder_path, threads=2, low_memory=True)
    config = SmolVLMConfig.from_dir(model_dir)
    hidden = json.loads((model_dir / "config.json").read_text())["text_config"]["hidden_size"]
    feed = {"inputs_embeds": np.random.default_rng(2).standard_normal((batch, tokens, hidden)).astype(np.float32),
            "seqlens_k": np.full(batch, tokens - 1, np.int32), "total_sequence_length": np.array(tokens, np.int32)}
    pixels = tile_feed()
    times = []
    for _ in range(reps + 1):
        run = _SharedKVCache(decoder, config, batch, tokens + 32, np.float32)  # fresh buffers, as per caption
        if vision is not None:
            vision.run(None, pixels)  # as in a caption: the vision encoder runs just before
        started = time.perf_counter()
        run(feed)
        times.append(time.perf_counter() - started)
    return 1000 * statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", type=Path, required=True, help="an exported SmolVLM folder (bench/vlm_models.py)")
    parser.add_argument("--per-tensor-dir", type=Path, help="the same export with the per-tensor int8 decoder")
    parser.add_argument("--reps", type=int, default=6)
    parser.add_argument("--prompt", type=int, default=153, help="prompt tokens (153: one 512-px tile and the caption prompt)")
    parser.add_argument("--work", type=Path, default=Path("/tmp/memesearch-bench-ceiling"))
    args = parser.parse_args()
    print(machine_line())
    config = json.loads((args.model_dir / "config.json").read_text())

    rates = gemm_rates(args.reps)
    for name, rate in rates.items():
        print(f"{name}: {rate:.1f} G(FL)OP/s for 1024x768 @ 768x3072")
    projections, attention = vision_operations(config)
    int8_rate, fp32_rate = rates["int8 DynamicQuantizeMatMul"], rates["fp32 MatMul"]
    floor = 1000 * (projections / int8_rate + attention / fp32_rate)
    print(f"vision encoder, one {TILE}-px tile: {projections:.0f} GOP int8 projections + {attention:.1f} GFLOP fp32 "
          f"attention = {floor:.0f} ms at those rates")

    shipped = open_session(args.model_dir / "onnx" / "vision_encoder_int8.onnx", threads=2, low_memory=True)
    variant = open_session(nbits_vision(args.model_dir, args.work, config["vision_config"]["num_attention_heads"]),
                           threads=2, low_memory=True)
    feed = tile_feed()
    shipped_ms = median_ms(lambda: shipped.run(None, feed), args.reps)
    variant_ms = median_ms(lambda: variant.run(None, feed), args.reps)
    print(f"vision encoder ms per tile: shipped int8 {shipped_ms:.0f} ({floor / shipped_ms:.0%} of the rates above), "
          f"8-bit MatMulNBits {variant_ms:.0f} ({variant_ms / shipped_ms:.2f}x)")
    del variant

    decoders = {"per-row int8": args.model_dir / "onnx" / "decoder_model_merged_int8.onnx"}
    if args.per_tensor_dir and (args.per_tensor_dir / "onnx" / "decoder_model_merged_int8.onnx").is_file():
        decoders["per-tensor int8"] = args.per_tensor_dir / "onnx" / "decoder_model_merged_int8.onnx"
    print(f"\n| decoder | prompts at once | prompt run ms ({args.prompt} tokens), after a vision run | ms per prompt "
          "| back to back | ms per prompt |")
    print("|---|---|---|---|---|---|")
    for name, path in decoders.items():
        for batch in (1, 8):
            after = prompt_run_ms(path, shipped, args.model_dir, batch, args.prompt, args.reps)
            alone = prompt_run_ms(path, None, args.model_dir, batch, args.prompt, args.reps)
            print(f"| {name} | {batch} | {after:.0f} | {after / batch:.0f} | {alone:.0f} | {alone / batch:.0f} |", flush=True)


if __name__ == "__main__":
    main()
