"""What deriving a pulled SmolVLM's GroupQueryAttention decoder costs (smolvlm/derive_decoder.py).

    python bench/bench_derive_decoder.py --checkpoint /tmp/gqa-cache/smolvlm-256m/checkpoint --bf16 --dtypes fp32 int8 q4

``--checkpoint`` holds config.json + model.safetensors (bench/vlm_models.py writes a full-size
random one); ``--bf16`` first rewrites the safetensors as bfloat16, as the hub's checkpoint is
(needs torch). Each dtype is derived in a fresh process into a scratch folder: wall seconds,
peak RSS and the file's size are printed. ``--compare-dir`` (an export of the same checkpoint by
our exporter) also checks that every weight of the derived graph equals that export's decoder's.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

CHILD = """
import json, resource, sys, time
from pathlib import Path
from memesearch.ml.families.smolvlm.derive_decoder import derive
start = time.perf_counter()
path = derive(Path(sys.argv[1]), sys.argv[2])
print(json.dumps({"s": time.perf_counter() - start, "mb": path.stat().st_size / 1e6,
                  "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e3}))
"""


def same_weights(derived: Path, exported: Path) -> bool:
    import numpy as np
    import onnx
    from onnx import numpy_helper

    a, b = ({t.name: numpy_helper.to_array(t) for t in onnx.load(str(p)).graph.initializer} for p in (derived, exported))
    return a.keys() == b.keys() and all(np.array_equal(a[name], b[name]) for name in a)


def main() -> None:
    from bench.machine import machine_line
    from memesearch.ml.families.smolvlm.assets import onnx_path
    from memesearch.ml.families.smolvlm.derive_decoder import CHECKPOINT, gqa_decoder_file

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--dtypes", nargs="+", default=["fp32", "int8"])
    parser.add_argument("--bf16", action="store_true")
    parser.add_argument("--compare-dir", type=Path)
    args = parser.parse_args()
    print(machine_line())
    with tempfile.TemporaryDirectory(prefix="derive-bench-") as scratch:
        folder = Path(scratch)
        (folder / "config.json").symlink_to((args.checkpoint / "config.json").resolve())
        if args.bf16:
            import torch
            from safetensors.torch import load_file, save_file

            tensors = load_file(str(args.checkpoint / CHECKPOINT))
            save_file({k: v.to(torch.bfloat16).contiguous() for k, v in tensors.items()}, str(folder / CHECKPOINT))
            del tensors
        else:
            (folder / CHECKPOINT).symlink_to((args.checkpoint / CHECKPOINT).resolve())
        print(f"checkpoint: {(folder / CHECKPOINT).stat().st_size / 1e6:.0f} MB{' (bf16)' if args.bf16 else ''}")
        for dtype in args.dtypes:
            done = subprocess.run([sys.executable, "-c", CHILD, str(folder), dtype], capture_output=True, text=True,
                                  check=True, cwd=Path(__file__).resolve().parents[1])
            result = json.loads(done.stdout.strip().splitlines()[-1])
            line = f"{dtype}: {result['s']:.1f} s, peak RSS {result['peak_mb']:.0f} MB, file {result['mb']:.0f} MB"
            if args.compare_dir:
                exported = args.compare_dir / onnx_path("decoder_model_merged", dtype)
                line += f", weights equal to {exported.name}: {same_weights(folder / gqa_decoder_file(dtype), exported)}"
            print(line, flush=True)
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
