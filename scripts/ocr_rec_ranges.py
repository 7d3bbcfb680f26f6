"""Write memesearch/ml/ocr_rec_ranges.json: the activation ranges of the int8 text recogniser.

Usage:  .venv/bin/python scripts/ocr_rec_ranges.py [--models-dir DIR]

Runs the full calibration of memesearch.ml.ocr_int8 (rendered sample memes read by the fp32
recogniser behind the int8 detector, the 0.01-99.99th percentile of the values around each
quantised convolution) on the recogniser rapidocr bundles, and stores the result with that
graph's sha256. Users' first index then makes the int8 graph in ~2 s instead of calibrating
for ~45 s. Run it again when rapidocr's recogniser or the recipe in ocr_int8 changes (a
stale file is ignored: its hash or recipe no longer matches, and calibration runs instead).
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from memesearch.library.hashing import sha256_file
from memesearch.ml import ocr_int8
from memesearch.ml.ocr import REC_MODEL_FILE, RapidOcrEngine, bundled_models, recognizer_inputs


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models-dir", type=Path, help="a memesearch models dir (its int8 detector is reused)")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        # int8 detection, as indexing reads; fp32 recognition, whose inputs are recorded.
        engine = RapidOcrEngine(threads=1, models_dir=args.models_dir or Path(scratch), int8_recognition=False)
        engine.ensure_loaded()
        source = bundled_models()[1]
        ranges = ocr_int8.recognizer_ranges(source, lambda images: recognizer_inputs(engine, images))
    table = {
        "source": REC_MODEL_FILE,
        "source_sha256": sha256_file(source),
        "recipe": ocr_int8.RECOGNIZER_RECIPE,
        "made_by": "scripts/ocr_rec_ranges.py",
        "ranges": ranges,
    }
    ocr_int8.RECOGNIZER_RANGES.write_text(json.dumps(table, indent=1) + "\n")
    print(f"wrote {len(ranges)} ranges to {ocr_int8.RECOGNIZER_RANGES}")


if __name__ == "__main__":
    main()
