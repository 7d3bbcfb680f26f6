"""Which image-text model visual search uses here, and the vector space its image vectors live in.

``MEMESEARCH_VISUAL_MODEL`` names the model (default ``clip-vit-b-32``). It is used only when
it can run here (files downloaded, or the ML service owns the models): an app without it
works as before, by words only. Image vectors are stored per space ``image:<model id>``,
so switching models never mixes vectors of two models in one search.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import dataclass, field

import numpy as np

from memesearch.config import Settings
from memesearch.errors import ConfigError, NotFoundError

log = logging.getLogger(__name__)

#: The stage status name of image embeddings (per meme, like "ocr" and "embed").
STAGE = "image_embed"
#: After the model failed to run (not in the ML service, a broken download), it is not asked
#: again for this long: searches and jobs go on by words instead of paying for each failure.
RETRY_AFTER_S = 60.0
#: Used when a spec sets no relevance floor of its own (text-to-image cosine). Not calibrated on
#: real CLIP weights: where 0.22 comes from is in models.yml (clip-vit-b-32) and
#: docs/CONFIGURATION.md; a user changes it per model in <data dir>/models.yml (no env setting).
DEFAULT_RELEVANCE_FLOOR = 0.22
#: Used when a spec sets no image floor of its own (image-to-image cosine, search by image's
#: "similar" tier); likewise per model in models.yml (`image_floor`), likewise not calibrated.
DEFAULT_IMAGE_FLOOR = 0.75
OFF = ("", "none", "off")


def space_of(model_id: str) -> str:
    """The model id under which the image vectors of ``model_id`` are stored."""
    return f"image:{model_id}"


@dataclass
class VisualModel:
    """The configured image-text model: loaded on first use (ONNX graphs open lazily too)."""

    model_id: str
    relevance_floor: float
    settings: Settings
    ml_client: object | None = None
    image_floor: float = DEFAULT_IMAGE_FLOOR
    _embedder: object | None = field(default=None, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _failed: tuple[float, str] | None = field(default=None, repr=False)

    @property
    def space(self) -> str:
        return space_of(self.model_id)

    def embed_images(self, images) -> np.ndarray:
        return self._call("embed_images", list(images))

    def embed_texts(self, texts) -> np.ndarray:
        return self._call("embed_texts", list(texts))

    def _call(self, method: str, items: list):
        """One model call; a model that cannot run is remembered for RETRY_AFTER_S."""
        from memesearch.errors import ModelUnavailableError
        from memesearch.ml.remote import ServiceUnavailableError

        failed = self._failed
        if failed is not None and time.monotonic() < failed[0]:
            raise ModelUnavailableError(failed[1], hint=f"memesearch models pull {self.model_id}")
        try:
            return getattr(self.embedder(), method)(items)
        except ServiceUnavailableError:
            raise  # the service is down, not the model: callers wait and retry
        except ModelUnavailableError as exc:
            self._failed = (time.monotonic() + RETRY_AFTER_S, getattr(exc, "message", None) or str(exc))
            raise
        except NotFoundError as exc:
            if self.ml_client is None:
                raise
            # The ML service does not know this model id (its models.yml differs): not runnable there.
            self._failed = (time.monotonic() + RETRY_AFTER_S, f"the ML service cannot run {self.model_id}: {exc}")
            raise ModelUnavailableError(self._failed[1]) from exc

    def embedder(self):
        """``embed_images`` / ``embed_texts`` / ``embed_query``: in-process, or the ML service's."""
        with self._lock:
            if self._embedder is None:
                if self.ml_client is not None:
                    from memesearch.ml.remote import RemoteImageTextEmbedder

                    self._embedder = RemoteImageTextEmbedder(self.ml_client, self.model_id)
                else:
                    from memesearch.ml.factory import load_image_text_embedder

                    self._embedder = load_image_text_embedder(self.model_id, self.settings)
            return self._embedder


def configured_spec(settings: Settings):
    """The spec ``visual_model`` names, None when visual search is turned off; a clear error when
    the setting names an unknown model or a caption model."""
    from memesearch.ml.registry import get_spec

    name = settings.visual_model.strip()
    if name.lower() in OFF:
        return None
    try:
        spec = get_spec(name, settings.home)
    except NotFoundError as exc:
        raise ConfigError(f"MEMESEARCH_VISUAL_MODEL={name}: {exc.message}", hint=exc.hint) from exc
    if not spec.is_image_text:
        raise ConfigError(
            f"MEMESEARCH_VISUAL_MODEL={name} is a caption model, not an image-text embedding model",
            hint="use clip-vit-b-32, or `none` to turn visual search off",
        )
    return spec


@dataclass(frozen=True)
class VisualStatus:
    """What ``memesearch status`` says about visual search."""

    model_id: str | None  # the model in use; None while visual search is off
    image_vectors: int  # vectors of that model's space
    line: str  # one line: the model and its vectors, or why it is off and what turns it on


def visual_status(settings: Settings, store, visual: VisualModel | None) -> VisualStatus:
    """The status of ``visual`` (the Core's ``load_visual_model`` result) for ``settings``."""
    if visual is not None:
        count = len(store.vector_hashes(visual.space))
        return VisualStatus(visual.model_id, count, f"{visual.model_id}: {count} image vectors")
    wanted = settings.visual_model.strip()
    # Off by choice, or configured but not downloaded (load_visual_model's readiness check failed).
    turn_on = "MEMESEARCH_VISUAL_MODEL" if wanted.lower() in OFF else f"memesearch models pull {wanted}"
    return VisualStatus(None, 0, f"off ({turn_on})")


def load_visual_model(settings: Settings, ml_client=None) -> VisualModel | None:
    """The visual model when it is configured and can run here, else None (search by words only)."""
    from memesearch.ml.readiness import check

    spec = configured_spec(settings)
    if spec is None:
        return None
    state = check(spec, settings)  # files and packages only; nothing is loaded
    if not state.ready:
        log.debug("visual search is off: %s is not installed (%s)", spec.id, "; ".join(state.reasons))
        return None
    floor = spec.relevance_floor if spec.relevance_floor is not None else DEFAULT_RELEVANCE_FLOOR
    image_floor = spec.image_floor if spec.image_floor is not None else DEFAULT_IMAGE_FLOOR
    return VisualModel(spec.id, floor, settings, ml_client, image_floor=image_floor)
