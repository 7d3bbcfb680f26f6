"""Moondream 2 through transformers remote code (``vikhyatk/moondream2``), for users online.

The hub model exposes its own API instead of ``generate``: ``model.caption(image,
length="short"|"normal", settings={"max_tokens": n})["caption"]`` and ``model.query(image,
question, settings=...)["answer"]`` (``HfMoondream`` in ``hf_moondream.py``; see
https://huggingface.co/vikhyatk/moondream2 and ``clients/python/moondream/torch/`` in
https://github.com/vikhyat/moondream). Its code also fetches the tokenizer from the hub
(``moondream/starmie-v1`` in the 2025-06-21 release), so the first load needs network
access; afterwards the Hugging Face cache serves both.

Remote code runs only from the pinned revision below, never from a moving branch.
"""

from __future__ import annotations

import os
from pathlib import Path

from memesearch.errors import ModelUnavailableError, require
from memesearch.ml.base import CaptionRequest, CaptionResult
from memesearch.ml.families.common.torch_backend import TorchCaptioner

# torch-only module: without torch its import fails here, naming the extra to install.
require("torch", extra="torch", purpose="The PyTorch Moondream backend")

HUB_REPO = "vikhyatk/moondream2"
#: The commit of the 2025-06-21 release tag (the last Moondream 2 release).
PINNED_REVISION = "9a7d4024050840e001defacec2b00727e89149e6"
DEFAULT_PROMPT = "short"
CAPTION_LENGTHS = ("short", "normal")


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in {"1", "true", "yes", "on"}


class TorchMoondreamCaptioner(TorchCaptioner):
    batch_size = 1
    family_name = "Moondream 2"

    def __init__(self, model_dir_or_repo: str | Path = HUB_REPO, *, revision: str | None = None, **options) -> None:
        super().__init__(model_dir_or_repo, revision=revision, **options)
        self.revision = revision or (None if Path(self.source).is_dir() else PINNED_REVISION)
        self.model_id = f"moondream:{self.source}@{self.revision or 'local'}"

    def _load(self) -> None:
        _, transformers = self._import_torch()
        try:
            model = transformers.AutoModelForCausalLM.from_pretrained(
                self.source,
                revision=self.revision,
                trust_remote_code=True,
                dtype=self.torch_dtype,
                local_files_only=_offline(),
            )
        except Exception as exc:  # hub errors, missing files and remote-code import errors alike
            raise ModelUnavailableError(
                f"cannot load Moondream 2 from {self.source!r} (revision {self.revision}): "
                f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
                hint="the torch backend downloads vikhyatk/moondream2 (and its tokenizer) from huggingface.co on "
                "first use; connect once, or use the onnx backend with a downloaded moondream-*-int8.mf.gz bundle",
            ) from exc
        self.model = model.eval()

    def _caption_batch(self, requests: list[CaptionRequest]) -> list[CaptionResult]:
        results = []
        for request in requests:
            prompt = request.prompt or DEFAULT_PROMPT
            settings = {"max_tokens": request.max_new_tokens}
            image = request.image.convert("RGB")
            if prompt in CAPTION_LENGTHS:
                text = self.model.caption(image, length=prompt, settings=settings)["caption"]
            else:
                text = self.model.query(image, prompt, settings=settings)["answer"]
            # The remote API returns text only; ids are re-encoded from it with the model's tokenizer.
            tokenizer = getattr(getattr(self.model, "model", None), "tokenizer", None)
            ids = tokenizer.encode(text).ids if tokenizer is not None else []
            results.append(CaptionResult(text=text.strip(), token_ids=ids))
        return results
