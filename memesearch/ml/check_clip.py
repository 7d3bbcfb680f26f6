"""`models check` rows of the clip family: embeddings compared by cosine, not tokens.

* ``--tiny``: a tiny random CLIPModel, exported by our exporter (fp32 and int8); the ONNX
  image and text embeddings must have cosine >= PARITY_COSINE with transformers (fp32), and
  with transformers under an emulation of ONNX Runtime's int8 MatMuls (int8);
* installed: the ONNX rows against the torch backend's embeddings (fp32 must agree; int8
  reports its cosine, which measures quantisation, not a bug).

``min_cosine`` is the lowest cosine over the fixed images and texts; ``ms_per_image`` is the
time of one image embedding.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from memesearch.config import Settings
from memesearch.ml.check_rows import CheckRow
from memesearch.ml.failures import failure_reason
from memesearch.ml.registry import ModelSpec

PARITY_COSINE = 0.9999


def _embed_all(model, images, texts) -> tuple[np.ndarray, float]:
    """(image and text rows stacked, ms per image)."""
    started = time.perf_counter()
    image_rows = model.embed_images(images)
    ms = (time.perf_counter() - started) * 1000 / max(len(images), 1)
    return np.concatenate([image_rows, model.embed_texts(texts)]), ms


def _compare(row: CheckRow, vectors: np.ndarray, reference: np.ndarray | None, *, judge: bool = True) -> None:
    if reference is None:
        return
    row.min_cosine = round(float(np.min(np.sum(vectors * reference, axis=1))), 6)
    if judge:
        row.parity = row.min_cosine >= PARITY_COSINE


def check_tiny_clip(workdir: Path) -> list[CheckRow]:
    rows = {key: CheckRow("tiny-clip", "clip", *key) for key in (("torch", "fp32"), ("onnx", "fp32"), ("onnx", "int8"))}
    try:
        from memesearch.ml.families.clip import export
        from memesearch.ml.families.clip.onnx_backend import ClipOnnxEmbedder
        from memesearch.ml.families.clip import tiny
        from memesearch.ml.families.common import int8_reference
    except Exception as exc:  # torch or transformers not installed
        for row in rows.values():
            row.error = f"not available: {failure_reason(exc)}"
        return list(rows.values())
    for row in rows.values():
        row.available = True
    images, texts = tiny.check_images(), tiny.CHECK_TEXTS
    try:
        checkpoint = tiny.build_tiny_checkpoint(workdir / "checkpoint", seed=0)
        reference_model = tiny.Reference(checkpoint)
        reference, ms = _embed_all(reference_model, images, texts)
        rows["torch", "fp32"].loads = True
        rows["torch", "fp32"].ms_per_image = round(ms, 2)
        with int8_reference.emulate_ort_int8(patch_convs=True):  # CLIP int8 graphs: clip/patch_matmul.py
            int8_expected, _ = _embed_all(reference_model, images, texts)
        exported = export.export(checkpoint, workdir / "onnx", int8=True)
    except Exception as exc:
        for row in rows.values():
            row.error = failure_reason(exc)
        return list(rows.values())
    for dtype, expected in (("fp32", reference), ("int8", int8_expected)):
        row = rows["onnx", dtype]
        try:
            model = ClipOnnxEmbedder(exported, dtype=dtype, threads=1)
            model.ensure_loaded()
            row.loads = True
            vectors, ms = _embed_all(model, images, texts)
            row.ms_per_image = round(ms, 2)
            _compare(row, vectors, expected)
        except Exception as exc:
            row.error = failure_reason(exc)
    return list(rows.values())


def check_installed_clip(spec: ModelSpec, settings: Settings, availability) -> list[CheckRow]:
    """Rows for an installed clip model; ``availability(spec, settings, backend, dtype)`` says why not."""
    from memesearch.ml.check_rows import fixed_image
    from memesearch.ml.image_text import OPENERS
    from memesearch.ml.families.clip.tiny import CHECK_TEXTS

    images = [fixed_image(), fixed_image(40, 90)]
    variants = [("onnx", d) for d in ("fp32", "int8") if spec.sources.onnx and d in spec.sources.onnx.dtypes]
    variants += [("torch", "fp32")] if "torch" in spec.backends else []
    rows: list[tuple[CheckRow, np.ndarray | None]] = []
    reference = None
    for backend, dtype in variants:
        row = CheckRow(spec.id, spec.family, backend, dtype)
        rows.append((row, None))
        problem = availability(spec, settings, backend, dtype)
        if problem:
            row.error = failure_reason(problem)
            continue
        row.available = True
        try:
            opened = OPENERS[backend](spec, settings, dtype)
            row.loads = True
            vectors, ms = _embed_all(opened.model, images, CHECK_TEXTS)
            row.ms_per_image = round(ms, 2)
            rows[-1] = (row, vectors)
            if backend == "torch":
                reference = vectors
        except Exception as exc:
            row.error = failure_reason(exc)
    for row, vectors in rows:
        if row.backend == "onnx" and vectors is not None:
            _compare(row, vectors, reference, judge=row.dtype == "fp32")
    return [row for row, _ in rows]
