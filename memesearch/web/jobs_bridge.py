"""How the web app hands work to the jobs layer (memesearch.jobs via ``core.jobs``).

Every bulk or slow operation the UI triggers (index a folder, describe memes,
re-embed after an edit) is a durable run; the pages only start and watch runs.
"""

from __future__ import annotations

from memesearch.errors import InvalidInputError

KINDS = ("describe", "index", "ocr", "embed")


def start(core, kind: str, *, model: str | None = None, meme_ids: list[int] | None = None,
          folder_id: int | None = None) -> dict:
    if kind not in KINDS:
        raise InvalidInputError(f"unknown job kind {kind!r}; choose one of {', '.join(KINDS)}")
    return core.jobs.start(kind, model=model, meme_ids=meme_ids, folder_id=folder_id).as_dict()


def refresh_embeddings(core) -> None:
    """An edit changed a meme's text: recompute its vector in the background (keyword search sees it now)."""
    core.jobs.start("embed")  # only memes whose text hash changed are re-embedded


def index_folder(core, folder_id: int) -> dict:
    return start(core, "index", folder_id=folder_id)


def caption_model_id(core, model) -> str:
    """A known caption model id (the default when ``model`` is None), or a clear error."""
    from memesearch.ml.readiness import listed_spec

    if model is not None and not isinstance(model, str):
        raise InvalidInputError("model must be a model id string")
    return listed_spec(model or core.settings.caption_model, core.settings).id
