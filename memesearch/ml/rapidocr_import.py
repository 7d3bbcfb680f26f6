"""Import rapidocr's pipeline without building OmegaConf trees of its model catalogue.

Importing ``rapidocr.main`` loads ``default_models.yaml`` (85 kB of model routes, download
URLs and checksums) twice through ``OmegaConf.load``: ~0.7 s CPU, most of an OCR worker's
start-up, paid again in every worker. Plain YAML parsing of the same file takes ~15 ms and
gives the same content. So while rapidocr imports, that one file is read as plain dicts
(its model routing only calls ``.get`` and iterates); the one user that needs an OmegaConf
tree (``InferSession.get_model_url``, which looks up download URLs and which we never reach:
both model paths are pinned) gets it built on first use.
"""

from __future__ import annotations

import sys
import threading
from pathlib import Path

CATALOGUE = "default_models.yaml"
_import_lock = threading.Lock()


class _TreeOnFirstUse:
    """A class attribute that becomes ``OmegaConf.create(content)`` the first time it is read."""

    def __init__(self, content: dict) -> None:
        self._content, self._tree = content, None

    def __get__(self, instance, owner):
        if self._tree is None:
            from omegaconf import OmegaConf

            self._tree = OmegaConf.create(self._content)
        return self._tree


def _plain_yaml(path) -> dict:
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C parser when PyYAML has it
    with open(path, encoding="utf-8") as handle:
        return yaml.load(handle, Loader=loader)


def rapidocr_class(rapidocr):
    """``rapidocr.RapidOCR``, imported with the catalogue read as plain YAML (see the module doc)."""
    with _import_lock:
        if "rapidocr.inference_engine.base" in sys.modules:  # imported already (by us or not)
            return rapidocr.RapidOCR
        from omegaconf import OmegaConf

        real_load = OmegaConf.__dict__["load"]  # the staticmethod itself, put back as it was
        handed_out: list[dict] = []

        def load(path, *args, **kwargs):
            if Path(path).name != CATALOGUE:
                return real_load.__func__(path, *args, **kwargs)
            handed_out.append(_plain_yaml(path))
            return handed_out[-1]

        OmegaConf.load = staticmethod(load)
        try:
            engine_class = rapidocr.RapidOCR
        finally:
            OmegaConf.load = real_load
        from rapidocr.inference_engine import base

        catalogue = base.InferSession.__dict__.get("model_info")
        if any(catalogue is plain for plain in handed_out):
            base.InferSession.model_info = _TreeOnFirstUse(catalogue)
        return engine_class
