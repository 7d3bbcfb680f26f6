"""Mixed-precision int8 text recognition: which convolutions can be int8 without losing word recall?

Usage:  .venv/bin/python bench/bench_ocr_rec_int8.py --models-dir DIR [--memes 60] [--seeds 0 1]
            [--subsets all c0_17 c18_53 ...] [--weight-bits 7 8] [--percentile 99.99]

The recogniser's line inputs are recorded while rendered memes (calibration seeds, not the
measured ones) are read, and each subset of its convolutions is quantised to static int8 QDQ
with them (memesearch.ml.ocr_int8.quantize_qdq: per-channel weights, MinMax ranges); the
sequence part (SVTR neck, attention, CTC head) stays fp32. Then every measured meme is read by
every graph in turn (paired, one process, 1 thread, int8 detection for all): CPU time and word
recall per seed, against the bundled fp32 recogniser. Writes the graphs to a temporary folder.
``--percentile`` sets activation ranges from that percentile of the values instead of their
extremes. What memesearch ships (ml/ocr_int8.py): ``--subsets c18_53 --weight-bits 8 --percentile 99.99``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from bench_ocr import word_recall

from memesearch.library.decode import load_rgb
from memesearch.library.sample_captions import SPACELESS_CAPTION
from memesearch.library.samples import render_sample_memes
from memesearch.ml import ocr
from memesearch.ml.ocr_int8 import quantize_qdq

#: Conv.0-53 are the PP-LCNet backbone; Conv.54-56 and the MatMuls are the SVTR neck and CTC head.
DEPTHWISE = {5, 10, 13, 16, 19, 24, 27, 32, 35, 40, 43, 46, 51}
SUBSETS = {
    "all": range(0, 54), "c0_17": range(0, 18), "c18_53": range(18, 54), "c22_53": range(22, 54),
    "c45_53": range(45, 54), "pointwise": [i for i in range(1, 54) if i not in DEPTHWISE],
    "pointwise18_53": [i for i in range(18, 54) if i not in DEPTHWISE],
}


def rendered(seed: int, count: int, folder: Path):
    memes = render_sample_memes(folder / str(seed), count=count, seed=seed)
    texts = [SPACELESS_CAPTION.replace(" ", "") if meme.text == SPACELESS_CAPTION else meme.text for meme in memes]
    return [load_rgb(meme.path, max_megapixels=50) for meme in memes], texts


def engine(models_dir: Path, rec_model: str | None = None) -> ocr.RapidOcrEngine:
    """Our OCR engine, with another recogniser graph if given (rapidocr's params, patched at load)."""
    import rapidocr

    original = rapidocr.RapidOCR

    class Patched(original):
        def __init__(self, params):
            super().__init__(params={**params, **({"Rec.model_path": rec_model} if rec_model else {})})

    rapidocr.RapidOCR = Patched
    try:
        reader = ocr.RapidOcrEngine(threads=1, models_dir=models_dir, int8_recognition=False)
        reader.ensure_loaded()
    finally:
        rapidocr.RapidOCR = original
    return reader


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, required=True, help="where the int8 detector is (derived once)")
    parser.add_argument("--memes", type=int, default=60)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--calibration-seeds", type=int, nargs="+", default=[5, 7])
    parser.add_argument("--calibration-memes", type=int, default=30)
    parser.add_argument("--subsets", nargs="+", default=list(SUBSETS), choices=list(SUBSETS))
    parser.add_argument("--weight-bits", type=int, nargs="+", default=[7, 8], choices=[7, 8])
    parser.add_argument("--percentile", type=float, help="activation ranges from this percentile (default: min/max)")
    args = parser.parse_args()
    import rapidocr

    fp32 = Path(rapidocr.__file__).parent / "models" / ocr.REC_MODEL_FILE
    readers = {"fp32": engine(args.models_dir)}
    with tempfile.TemporaryDirectory() as scratch:
        folder = Path(scratch)
        inputs = []
        for seed in args.calibration_seeds:
            inputs += ocr.recognizer_inputs(readers["fp32"], rendered(seed, args.calibration_memes, folder)[0])
        print(f"calibration: {len(inputs)} lines from seeds {args.calibration_seeds}")
        for subset in args.subsets:
            for bits in args.weight_bits:
                target = str(folder / f"{subset}-w{bits}.onnx")
                quantize_qdq(fp32, target, inputs, nodes=[f"Conv.{i}" for i in SUBSETS[subset]], reduce_range=bits == 7,
                             percentile=args.percentile)
                readers[f"{subset} w{bits}"] = engine(args.models_dir, target)
        for seed in args.seeds:
            images, texts = rendered(seed, args.memes, folder)
            for reader in readers.values():
                for image in images[:3]:
                    reader.read(image)
            cpu = {name: [] for name in readers}
            recall = {name: [] for name in readers}
            for image, text in zip(images, texts):
                for name, reader in readers.items():
                    started = time.process_time()
                    result = reader.read(image)
                    cpu[name].append(time.process_time() - started)
                    recall[name].append(word_recall(text, result.text))
            for name in readers:
                print(f"seed {seed}  {name:18} cpu ms/meme {1000 * statistics.mean(cpu[name]):6.1f}  "
                      f"vs fp32 {sum(cpu[name]) / sum(cpu['fp32']):.3f}  word recall {statistics.mean(recall[name]):.3f}  "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
