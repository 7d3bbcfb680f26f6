"""One package per model family: its ONNX loop and preprocessing (torch-free runtime), its
PyTorch fallback backend, its torch -> ONNX exporter and its tiny random model (torch-only).

``memesearch/ml/families/<family>/``:

* ``onnx_backend.py`` (+ its preprocessing, tokenizer, asset modules): numpy + onnxruntime,
  part of the core install;
* ``torch_backend.py``: the transformers fallback (``[torch]`` extra);
* ``export.py`` (+ ``export_*.py``): our torch -> ONNX exporter (torch-only);
* ``tiny.py``: a tiny random model of the real architecture, for parity tests (torch-only).

``common/`` holds what the torch-only modules share. The core never imports a torch-only
module at import time (tests/test_import_graph.py checks this).
"""

from __future__ import annotations

import importlib
import inspect
from types import ModuleType

from memesearch.errors import ModelUnavailableError
from memesearch.ml.base import Captioner

#: kind -> module name inside ``memesearch.ml.families.<family>``.
FAMILY_MODULES = {"onnx": "onnx_backend", "torch_backends": "torch_backend", "export": "export", "tiny": "tiny"}
#: Modules that import torch (directly or through transformers) when used: never imported by the core.
TORCH_ONLY_MODULES = ("torch_backend", "export", "export_modules", "export_merge", "tiny")


def family_module(kind: str, family: str) -> ModuleType:
    """``memesearch.ml.families.<family>.<module of kind>``; a module that does not exist is a clear error."""
    name = f"memesearch.ml.families.{family}.{FAMILY_MODULES[kind]}"
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name and name.startswith(exc.name):
            label = {"onnx": "ONNX", "torch_backends": "PyTorch"}.get(kind, kind)
            raise ModelUnavailableError(f"this install has no {label} code for the {family} family ({name})") from exc
        raise


def captioner_class(module: ModuleType, backend: str) -> type[Captioner]:
    """The concrete Captioner a family module defines for ``backend``."""
    for _, value in vars(module).items():
        if (
            inspect.isclass(value)
            and issubclass(value, Captioner)
            and not inspect.isabstract(value)
            and value.__module__ == module.__name__
            and getattr(value, "backend", "") == backend
        ):
            return value
    raise ModelUnavailableError(f"{module.__name__} defines no {backend} Captioner")
