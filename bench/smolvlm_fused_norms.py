"""Experiment (not shipped): SmolVLM's int8 decoder with onnxruntime.transformers' norm fusions.

    python bench/smolvlm_fused_norms.py /tmp/vlmspeed-cache/smolvlm-256m/onnx --heads 9 --hidden 576

Runs ``optimize_model(model_type="qwen3", opt_level=0)`` on the fp32 decoder (it fuses the
RMSNorms into SkipSimplifiedLayerNormalization / SimplifiedLayerNormalization; no attention or
rotary pattern of our TorchScript export matches), quantises it like
memesearch.ml.onnx_runtime.quantize.quantize_matmuls (plus a default tensor type: shape
inference stops at the contrib ops), and writes it under the spare ``uint8`` dtype suffix with
copies of the int8 vision and embedding graphs, so ``bench_vlm.py --backends onnx:uint8`` and
``profile_decode.py --dtypes uint8`` run it. Results: docs/BENCHMARKS.md, Issue 16 captions.
"""

from __future__ import annotations

import argparse
import collections
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from memesearch.ml.families.smolvlm.assets import ONNX_PARTS, onnx_path  # noqa: E402
from memesearch.ml.onnx_runtime.quantize import REDUCE_RANGE  # noqa: E402

SLOT = "uint8"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir", type=Path, help="folder with onnx/decoder_model_merged.onnx")
    parser.add_argument("--heads", type=int, default=9)
    parser.add_argument("--hidden", type=int, default=576)
    args = parser.parse_args()
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    fused = optimize_model(str(args.model_dir / onnx_path("decoder_model_merged", "fp32")), model_type="qwen3",
                           num_heads=args.heads, hidden_size=args.hidden, opt_level=0,
                           optimization_options=FusionOptions("qwen3"))
    counts = collections.Counter(node.op_type for node in fused.model.graph.node)
    print({op: counts[op] for op in ("SkipSimplifiedLayerNormalization", "SimplifiedLayerNormalization",
                                     "RotaryEmbedding", "MultiHeadAttention", "GroupQueryAttention")})
    with tempfile.TemporaryDirectory() as folder:
        fp32 = Path(folder) / "fused.onnx"
        fused.save_model_to_file(str(fp32))
        quantize_dynamic(str(fp32), str(args.model_dir / onnx_path("decoder_model_merged", SLOT)),
                         op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8, reduce_range=REDUCE_RANGE,
                         extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    for part in ONNX_PARTS[:2]:  # vision_encoder, embed_tokens: today's int8 graphs
        shutil.copyfile(args.model_dir / onnx_path(part, "int8"), args.model_dir / onnx_path(part, SLOT))


if __name__ == "__main__":
    main()
