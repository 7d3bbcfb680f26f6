"""``memesearch models check``: does every model x backend load, run and agree?

Two modes:

* installed models (default): for every registry model and backend, whether it
  is available (packages, files, key), loads, how long one caption takes, and
  where both ONNX and the PyTorch reference run, whether their greedy tokens
  agree on a fixed image;
* ``--tiny``: per family, build a tiny random checkpoint, export it to ONNX
  (fp32 and int8) with our exporters, and compare the ONNX captioner's tokens
  with the PyTorch reference's. This runs offline and proves the runtime code
  without downloading anything. fp32 rows are compared with the fp32 reference,
  int8 rows with the same reference run under an emulation of ONNX Runtime's quantised
  MatMuls (memesearch/ml/families/common/int8_reference.py): per-tensor dynamic int8, except
  SmolVLM's decoder, whose 8-bit block weights multiply int8 activations quantised per row
  (``MatMulNBits``, accuracy_level 4). Against fp32, int8 rounding alone
  flips near-tied greedy tokens of a random model. Equal int8 tokens are the usual
  outcome, not a guarantee (ulp differences in the fp32 ops can flip a rounding, see
  tests/models/test_int8_reference.py), so only fp32 rows count as failed. SmolVLM also
  gets a q4 row (int8 vision, 4-bit weight-only decoder), compared with that reference
  with the decoder's weights 4-bit rounded and multiplied in fp32 instead.

The clip family (image-text embeddings, visual search) compares embeddings by cosine
instead of tokens: see memesearch/ml/check_clip.py.

Every row has the same shape (see ``CheckRow``) so the JSON output is stable.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

from memesearch.config import Settings
from memesearch.ml.availability import availability_problem
from memesearch.ml.base import CaptionRequest
from memesearch.ml.chain import LOADERS, Loaded
from memesearch.ml.check_rows import CheckRow, fixed_image
from memesearch.ml.failures import failure_reason
from memesearch.ml import families
from memesearch.ml.families import captioner_class
from memesearch.ml.registry import ModelSpec

#: Caption families (token parity).
FAMILIES = ("smolvlm", "florence2", "moondream")
#: Quantised ONNX dtypes `models check --tiny` exports and compares, besides fp32.
#: "int8-per-row": SmolVLM's int8 with models.yml's ``int8_decoder: per_row`` (bulk describe
#: batches exactly), exported into its own folder and run as dtype int8.
QUANTISED = {"smolvlm": ("int8", "int8-per-row", "q4")}
#: Every family `models check --tiny` knows, caption and image-text.
ALL_FAMILIES = (*FAMILIES, "clip")
CHECK_TOKENS = 16


def _timed(run: Callable[[], list[int]]) -> tuple[list[int], float]:
    started = time.perf_counter()
    tokens = run()
    return tokens, (time.perf_counter() - started) * 1000


def _compare(row: CheckRow, tokens: list[int], reference: list[int] | None) -> None:
    if reference is None:
        return
    row.tokens_compared = max(len(tokens), len(reference))
    row.parity = tokens == reference


# ----------------------------------------------------------------------------- --tiny


def _import_family(family: str) -> tuple[object, object, object]:
    return tuple(families.family_module(kind, family) for kind in ("tiny", "export", "onnx"))


def check_tiny_family(family: str, workdir: Path, *, tokens: int = CHECK_TOKENS) -> list[CheckRow]:
    """Tiny checkpoint -> export (fp32, int8) -> ONNX captioner vs the torch reference."""
    if family == "clip":
        from memesearch.ml.check_clip import check_tiny_clip

        return check_tiny_clip(workdir)
    model = f"tiny-{family}"
    quantised = QUANTISED.get(family, ("int8",))
    keys = (("torch", "fp32"), ("onnx", "fp32"), *(("onnx", dtype) for dtype in quantised))
    rows = {key: CheckRow(model, family, *key) for key in keys}
    try:
        tiny, export, onnx = _import_family(family)
        import torch  # noqa: F401 - the reference and the exporter need it
    except Exception as exc:  # module not written yet, or torch not installed
        for row in rows.values():
            row.error = f"not available: {failure_reason(exc)}"
        return list(rows.values())
    for row in rows.values():
        row.available = True
    image = fixed_image()
    prompt = getattr(tiny, "TINY_PROMPT", getattr(onnx, "DEFAULT_PROMPT", ""))
    try:
        checkpoint = tiny.build_tiny_checkpoint(workdir / "checkpoint", seed=0)
        # The reference's time includes loading it: its API has no separate load step.
        reference, ms = _timed(lambda: tiny.reference_generate(checkpoint, [image], prompt, tokens)[0])
        rows["torch", "fp32"].loads = True
        rows["torch", "fp32"].tokens_compared = len(reference)
        rows["torch", "fp32"].ms_per_image = round(ms, 2)
        exported = export.export(checkpoint, workdir / "onnx", int8=True, **({"q4": True} if "q4" in quantised else {}))
        folders = {dtype: exported for dtype in ("fp32", *quantised)}
        if "int8-per-row" in quantised:
            folders["int8-per-row"] = export.export(checkpoint, workdir / "onnx-per-row", int8=True, int8_decoder="per_row")
    except Exception as exc:
        for row in rows.values():
            row.error = failure_reason(exc)
            row.loads = False
        return list(rows.values())
    cls = captioner_class(onnx, "onnx")
    for dtype in ("fp32", *quantised):
        row = rows["onnx", dtype]
        try:
            captioner = cls(Path(folders[dtype]), dtype=dtype.removesuffix("-per-row"), threads=1)
            captioner.ensure_loaded()
            row.loads = True
            request = CaptionRequest(image=image, prompt=prompt, max_new_tokens=tokens)
            result_tokens, ms = _timed(lambda c=captioner: c.caption([request])[0].token_ids)
            row.ms_per_image = round(ms, 2)
            expected = reference
            if dtype != "fp32":
                from memesearch.ml.families.common import int8_reference

                by_dtype = {"int8": {}, "int8-per-row": {"int8_decoder": "per_row"}}.get(dtype, {"dtype": dtype})
                expected = int8_reference.reference_generate(family, checkpoint, [image], prompt, tokens, **by_dtype)[0]
            _compare(row, list(result_tokens), expected)
        except Exception as exc:
            row.error = failure_reason(exc)
    return list(rows.values())


def check_tiny(families: tuple[str, ...] = ALL_FAMILIES, *, tokens: int = CHECK_TOKENS) -> list[CheckRow]:
    rows: list[CheckRow] = []
    for family in families:
        with tempfile.TemporaryDirectory(prefix=f"memesearch-check-{family}-") as scratch:
            rows.extend(check_tiny_family(family, Path(scratch), tokens=tokens))
    return rows


# ----------------------------------------------------------------------------- installed models


def _backend_variants(spec: ModelSpec) -> list[tuple[str, str | None]]:
    variants: list[tuple[str, str | None]] = []
    for backend in spec.backends:
        if backend == "onnx" and spec.sources.onnx is not None:
            offered = [d for d in ("fp32", "int8") if d in spec.sources.onnx.dtypes]
            variants.extend(("onnx", d) for d in offered or [spec.sources.onnx.default_dtype])
        else:
            variants.append((backend, "fp32" if backend == "torch" else None))
    return variants


def check_installed(settings: Settings, *, tokens: int = CHECK_TOKENS, loaders: dict | None = None) -> list[CheckRow]:
    loaders = loaders or LOADERS
    image = fixed_image()
    rows: list[CheckRow] = []
    from memesearch.ml.readiness import listed_specs

    for spec in listed_specs(settings):
        if spec.is_image_text:
            from memesearch.ml.check_clip import check_installed_clip

            rows.extend(check_installed_clip(spec, settings, availability_problem))
            continue
        references: dict[str, list[int]] = {}
        spec_rows: list[tuple[CheckRow, list[int] | None]] = []
        for backend, dtype in _backend_variants(spec):
            row = CheckRow(spec.id, spec.family, backend, dtype or {"fake": "none", "api": "remote"}.get(backend, "-"))
            spec_rows.append((row, None))
            problem = availability_problem(spec, settings, backend, dtype)
            if problem:
                row.error = failure_reason(problem)
                continue
            row.available = True
            if backend == "api":
                # Loading only checks the key; a caption would cost money on every check.
                row.error = "not called; try `memesearch caption IMAGE --backend api`"
            try:
                loaded: Loaded = loaders[backend](spec, settings, dtype)
                row.loads = True
                row.dtype = loaded.dtype
                if backend == "api":
                    continue
                request = CaptionRequest(image=image, prompt=spec.effective_prompt(), max_new_tokens=tokens)
                produced, ms = _timed(lambda c=loaded.captioner: c.caption([request])[0].token_ids)
                row.ms_per_image = round(ms, 2)
                spec_rows[-1] = (row, list(produced))
                if backend == "torch":
                    references[spec.id] = list(produced)
                    row.tokens_compared = len(produced)
            except Exception as exc:
                row.error = failure_reason(exc)
        for row, produced in spec_rows:
            if row.backend == "onnx" and produced is not None:
                _compare(row, produced, references.get(spec.id))
        rows.extend(row for row, _ in spec_rows)
    return rows


def as_json(rows: list[CheckRow]) -> dict:
    return {"results": [asdict(row) for row in rows]}
