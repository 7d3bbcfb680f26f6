"""Visual search model cost: CLIP ViT-B/32 image and text embeddings, ORT int8 vs ORT fp32 vs torch fp32.

Usage:
  .venv/bin/python bench/bench_clip.py [--images 24] [--threads 2] [--work /tmp/memesearch-bench-clip]

A full-size RANDOM-weight CLIP ViT-B/32 with the real configuration (vision: hidden 768,
12 layers, 12 heads, patch 32, image 224; text: hidden 512, 12 layers, 8 heads, vocab 49408,
context 77; projection 512; compute does not depend on weight values) is built once, exported
with our exporter (memesearch/ml/families/clip/export.py) and quantised both ways, then every variant
runs in its own subprocess, so its peak RSS (ru_maxrss) is its own:

* image rows: ``embed_images`` on --images different 640x480 pictures, one after the other
  (preprocessing included), after two warm-up images; the fastest of --passes passes counts
  (the machine may be shared), the median pass is shown next to it;
* "CPU ms/image" is the process's CPU time (all threads, ORT's and OpenMP's spinning included)
  in the fastest pass: less disturbed than wall time when the machine is shared;
* "x torch" compares images/s with torch fp32 one image per call and in batches of 8;
* query rows: a process that only embeds texts (what a search process does: the image tower
  is never opened), median latency of one query over 20 after 3 warm-up queries.

Prints the CPU model and flags, versions, and a Markdown table.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from importlib import metadata
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

VARIANTS = [  # (label, backend, dtype, graph folder: "" shipped, else a comparison graph under out/)
    ("ORT int8 (7-bit weights, shipped)", "onnx", "int8", ""),
    ("ORT int8 (8-bit weights)", "onnx", "int8", "s8"),
    ("ORT int8 (patch Conv in fp32, before)", "onnx", "int8", "conv"),
    ("ORT int8, no spinning (MEMESEARCH_SPIN=0)", "onnx", "int8", ""),
    ("ORT fp32", "onnx", "fp32", None),
    ("torch fp32", "torch", "fp32", None),
]
QUERY = "when the meme is funny but you are at a funeral"


def machine_facts() -> dict:
    cpu, flags = "unknown", []
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name") and cpu == "unknown":
            cpu = line.split(":", 1)[1].strip()
        if line.startswith("flags") and not flags:
            wanted = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "fma", "f16c")
            flags = [flag for flag in line.split(":", 1)[1].split() if flag in wanted]
    versions = {name: metadata.version(name) for name in ("torch", "transformers", "onnxruntime", "numpy")}
    return {"cpu": cpu, "flags": " ".join(flags), "cores": os.cpu_count(), "python": platform.python_version(), **versions}


def build(work: Path) -> Path:
    """Checkpoint with the real ViT-B/32 shapes, exported; int8 graphs of both weight types."""
    import torch
    import transformers

    from onnxruntime.quantization import QuantType, quantize_dynamic

    from memesearch.ml.families.clip import export, tiny
    from memesearch.ml.families.clip.onnx_backend import onnx_file

    out = work / "onnx"
    if all((out / sub / onnx_file("textual", "int8")).is_file() for sub in ("", "s8", "conv")):
        return out
    checkpoint = work / "checkpoint"
    checkpoint.mkdir(parents=True, exist_ok=True)
    config = transformers.CLIPConfig(
        text_config=dict(vocab_size=49408, hidden_size=512, intermediate_size=2048, num_hidden_layers=12,
                         num_attention_heads=8, max_position_embeddings=77, projection_dim=512),
        vision_config=dict(hidden_size=768, intermediate_size=3072, num_hidden_layers=12, num_attention_heads=12,
                           image_size=224, patch_size=32, projection_dim=512),
        projection_dim=512,
    )
    torch.manual_seed(0)
    transformers.CLIPModel(config).eval().save_pretrained(checkpoint)
    tiny.build_tokenizer().save_pretrained(checkpoint)  # token ids < 49408; tokenizing costs microseconds
    transformers.CLIPImageProcessor().save_pretrained(checkpoint)  # shortest edge 224, crop 224
    export.export(checkpoint, out, int8=True)  # what the runtime derives (clip/onnx_backend.quantize_file)
    # The same folder with other int8 graphs, for the comparison rows: 8-bit weights (what the
    # runtime shipped before 7-bit weights) and the patch embedding left as an fp32 Conv (before
    # clip/patch_matmul.py).
    for sub, reduce_range in (("s8", False), ("conv", True)):
        folder = out / sub
        for name in ("config.json", "visual/preprocess_cfg.json", "textual/tokenizer.json", "textual/tokenizer_config.json"):
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            (folder / name).write_bytes((out / name).read_bytes())
        for tower in ("visual", "textual"):
            (folder / onnx_file(tower, "fp32")).unlink(missing_ok=True)
            (folder / onnx_file(tower, "fp32")).symlink_to(out / onnx_file(tower, "fp32"))
            quantize_dynamic(str(out / onnx_file(tower, "fp32")), str(folder / onnx_file(tower, "int8")),
                             op_types_to_quantize=["MatMul"], weight_type=QuantType.QInt8, reduce_range=reduce_range)
    return out


def pictures(count: int):
    """Different 640x480 pictures (gradients, blocks, text-like stripes)."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng(0)
    images = []
    for index in range(count):
        base = rng.integers(0, 255, size=(3,), dtype=np.uint8)
        image = Image.new("RGB", (640, 480), tuple(int(v) for v in base))
        draw = ImageDraw.Draw(image)
        for _ in range(12):
            x, y = int(rng.integers(0, 600)), int(rng.integers(0, 440))
            draw.rectangle((x, y, x + int(rng.integers(20, 200)), y + int(rng.integers(10, 80))),
                           fill=tuple(int(v) for v in rng.integers(0, 255, size=3)))
        draw.text((20, 20 + index % 400), f"meme {index}", fill=(255, 255, 255))
        images.append(image)
    return images


def preprocessing_ms(count: int = 16) -> float:
    """Our CLIP preprocessing alone (resize, crop, normalise) of the bench pictures, ms per image."""
    from memesearch.ml.families.clip.preprocess import preprocess

    images, best = pictures(count), float("inf")
    for _ in range(5):
        begin = time.perf_counter()
        for image in images:
            preprocess(image)
        best = min(best, time.perf_counter() - begin)
    return best * 1000 / count


def peak_rss_mb() -> int:
    """This process's peak RSS. Not ru_maxrss: it keeps the value of the (large) parent across fork + exec."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def embed_pass(model, images, args):
    import numpy as np

    if args.backend == "torch" and args.batch:
        model.batch_size = args.batch
        return model.embed_images(images)
    if args.batch:  # what our own exports allow (dynamic batch); Immich's graphs are batch 1
        from memesearch.ml.families.clip.preprocess import preprocess_batch

        return np.concatenate([
            model.visual.run(preprocess_batch(images[i : i + args.batch], model.image_settings))
            for i in range(0, len(images), args.batch)
        ])
    return np.concatenate([model.embed_images([image]) for image in images])


def worker(args: argparse.Namespace) -> dict:
    """One variant in this process: image throughput, or (--query) text latency only."""
    import numpy as np

    model_dir = Path(args.model_dir)
    if args.backend == "onnx":
        from memesearch.ml.families.clip.onnx_backend import ClipOnnxEmbedder

        model = ClipOnnxEmbedder(model_dir, dtype=args.dtype, threads=args.threads)
    else:
        from memesearch.ml.families.clip.torch_backend import ClipTorchEmbedder

        model = ClipTorchEmbedder(model_dir.parent / "checkpoint", threads=args.threads)
    started = time.perf_counter()
    model.ensure_loaded()
    result: dict = {}
    if args.query:
        for _ in range(3):
            model.embed_texts([QUERY])
        times = []
        for _ in range(20):
            begin = time.perf_counter()
            model.embed_texts([QUERY])
            times.append((time.perf_counter() - begin) * 1000)
        result["query_ms"] = round(statistics.median(times), 1)
    else:
        images = pictures(args.images + 2)
        model.embed_images(images[:2])
        result["load_and_warmup_s"] = round(time.perf_counter() - started, 2)
        rest = images[2:]
        passes, cpu = [], []  # the machine is shared: the fastest of --passes passes is the least disturbed
        for _ in range(args.passes):
            begin, begin_cpu = time.perf_counter(), time.process_time()
            vectors = embed_pass(model, rest, args)
            passes.append(time.perf_counter() - begin)
            cpu.append(time.process_time() - begin_cpu)
        result["images_per_s"] = round(len(rest) / min(passes), 2)
        result["ms_per_image"] = round(min(passes) * 1000 / len(rest), 1)
        result["ms_per_image_median_pass"] = round(statistics.median(passes) * 1000 / len(rest), 1)
        result["cpu_ms_per_image"] = round(min(cpu) * 1000 / len(rest), 1)  # all threads, spinning included
        np.save(args.vectors_out, vectors)
    result["peak_rss_mb"] = peak_rss_mb()
    return result


def run_variant(model_dir: Path, backend: str, dtype: str, threads: int, images: int, *, query: bool,
                batch: int = 0, passes: int = 3, vectors_out: Path | None = None, no_spinning: bool = False) -> dict:
    command = [sys.executable, __file__, "--worker", "--model-dir", str(model_dir), "--backend", backend,
               "--dtype", dtype, "--threads", str(threads), "--images", str(images), "--batch", str(batch),
               "--passes", str(passes)]
    command += ["--query"] if query else ["--vectors-out", str(vectors_out)]
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "TOKENIZERS_PARALLELISM": "false", "PYTHONPATH": str(REPO),
           "MEMESEARCH_SPIN": "0" if no_spinning else "1"}
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    for line in done.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    return {"error": (done.stderr or done.stdout).strip().splitlines()[-1:]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=16, help="images per pass")
    parser.add_argument("--passes", type=int, default=3, help="timed passes; the fastest counts")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--work", default="/tmp/memesearch-bench-clip")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--model-dir", help=argparse.SUPPRESS)
    parser.add_argument("--backend", help=argparse.SUPPRESS)
    parser.add_argument("--dtype", help=argparse.SUPPRESS)
    parser.add_argument("--batch", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--query", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--vectors-out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print("RESULT " + json.dumps(worker(args)), flush=True)
        return

    import numpy as np

    facts = machine_facts()
    print(f"CPU: {facts['cpu']} ({facts['cores']} cores visible, flags: {facts['flags']}); {args.threads} threads")
    print("versions: " + ", ".join(f"{k} {v}" for k, v in facts.items() if k not in ("cpu", "flags", "cores")))
    work = Path(args.work)
    started = time.perf_counter()
    out = build(work)
    print(f"built + exported in {time.perf_counter() - started:.0f} s (cached in {work})")
    print(f"load average before: {os.getloadavg()[0]:.1f}")
    rows = []
    print(f"preprocessing alone (in every row): {preprocessing_ms():.2f} ms per image (fastest of 5 passes)")
    variants = [*VARIANTS, ("ORT int8, batches of 8", "onnx", "int8", ""),
                ("ORT fp32, batches of 8", "onnx", "fp32", None), ("torch fp32, batches of 8", "torch", "fp32", None)]
    for label, backend, dtype, graphs in variants:
        model_dir = out / graphs if graphs else out
        batch = 8 if "batches" in label else 0
        vectors = work / f"vectors-{len(rows)}.npy"
        no_spinning = "no spinning" in label
        image = run_variant(model_dir, backend, dtype, args.threads, args.images, query=False, batch=batch,
                            passes=args.passes, vectors_out=vectors, no_spinning=no_spinning)
        query = {} if batch else run_variant(model_dir, backend, dtype, args.threads, args.images, query=True,
                                             no_spinning=no_spinning)
        rows.append((label, image, query, vectors))
        print(f"{label}: {image} {query}", file=sys.stderr, flush=True)
    print(f"load average after: {os.getloadavg()[0]:.1f}\n")
    by_label = {label: (image, vectors) for label, image, _, vectors in rows}
    fp32_vectors = by_label["ORT fp32"][1]
    reference = np.load(fp32_vectors) if fp32_vectors.is_file() else None
    torch_ips = by_label["torch fp32"][0].get("images_per_s")
    torch_batched_ips = by_label["torch fp32, batches of 8"][0].get("images_per_s")
    print("| variant | images/s | ms/image (median pass) | CPU ms/image | x torch fp32 one per call | x torch fp32 batches of 8 "
          "| peak RSS, images | query ms | peak RSS, query only | min cos vs ORT fp32 |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for label, image, query, vectors in rows:
        if "error" in image:
            print(f"| {label} | error: {image['error']} | | | | | | | | |")
            continue
        speedup = f"{image['images_per_s'] / torch_ips:.2f}x" if torch_ips else "-"
        speedup += f" | {image['images_per_s'] / torch_batched_ips:.2f}x" if torch_batched_ips else " | -"
        cosine = "-"
        if reference is not None and vectors.is_file():
            cosine = f"{float(np.min(np.sum(np.load(vectors) * reference, axis=1))):.4f}"
        print(f"| {label} | {image['images_per_s']} | {image['ms_per_image']} ({image['ms_per_image_median_pass']}) | "
              f"{image['cpu_ms_per_image']} | {speedup} | {image['peak_rss_mb']} MB | "
              f"{query.get('query_ms', '-')} | {str(query.get('peak_rss_mb', '-')) + ' MB' if query else '-'} | {cosine} |")


if __name__ == "__main__":
    main()
