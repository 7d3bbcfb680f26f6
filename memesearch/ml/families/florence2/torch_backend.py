"""Florence-2 on PyTorch through transformers' native classes (no remote code).

Works with the ``florence-community/Florence-2-base`` / ``-large`` checkpoints
(the converted ones transformers 5 loads natively) and any local directory in
that format, e.g. our tiny test checkpoint.
"""

from __future__ import annotations

from pathlib import Path

from memesearch.errors import ModelUnavailableError, require
from memesearch.ml.base import CaptionRequest, CaptionResult
from memesearch.ml.families.florence2.decode import DecodeSettings, caption_by_limit, strip_sequence
from memesearch.ml.families.florence2.inputs import clean_text, to_rgb
from memesearch.ml.families.common.torch_backend import TorchCaptioner

# torch-only module: without torch its import fails here, naming the extra to install.
require("torch", extra="torch", purpose="The PyTorch Florence-2 backend")

DEFAULT_PROMPT = "<MORE_DETAILED_CAPTION>"
DEFAULT_REPO = "florence-community/Florence-2-base"


class TorchFlorence2Captioner(TorchCaptioner):
    family_name = "Florence-2"

    def __init__(self, model_dir_or_repo: str | Path = DEFAULT_REPO, **options) -> None:
        super().__init__(model_dir_or_repo, **options)
        self.model_id = f"florence2:{Path(self.source).name}"

    def _load(self) -> None:
        _, transformers = self._import_torch()
        try:
            self._model = transformers.Florence2ForConditionalGeneration.from_pretrained(
                self.source, revision=self.revision, dtype=self.torch_dtype
            ).eval()
            self._processor = transformers.AutoProcessor.from_pretrained(self.source, revision=self.revision)
        except (OSError, ValueError) as exc:
            raise ModelUnavailableError(
                f"cannot load Florence-2 from {self.source!r}: {exc}",
                hint="use a florence-community/Florence-2-* checkpoint (native transformers format); "
                "without network access, download it elsewhere and pass its directory",
            ) from exc
        generation = self._model.generation_config
        self._settings = DecodeSettings(
            decoder_start_token_id=generation.decoder_start_token_id,
            eos_token_id=generation.eos_token_id,
            pad_token_id=generation.pad_token_id,
            forced_bos_token_id=generation.forced_bos_token_id,
            forced_eos_token_id=generation.forced_eos_token_id,
            no_repeat_ngram_size=generation.no_repeat_ngram_size or 0,
        )

    def generate_ids(self, requests: list[CaptionRequest], max_new_tokens: int) -> list[list[int]]:
        """Greedy generation; text ids per request (no start token, forced BOS or EOS)."""
        inputs = self._processor(
            text=[request.prompt for request in requests],
            images=[to_rgb(request.image) for request in requests],
            return_tensors="pt",
            padding=True,
        )
        inputs["pixel_values"] = inputs["pixel_values"].to(self._model.dtype)
        with self._torch.no_grad():
            output = self._model.generate(
                **inputs, do_sample=False, num_beams=1, max_new_tokens=max_new_tokens
            )
        return [strip_sequence(row.tolist(), self._settings) for row in output]

    def decode(self, token_ids: list[int]) -> str:
        return clean_text(self._processor.tokenizer.decode(token_ids, skip_special_tokens=False))

    def _caption_batch(self, requests: list[CaptionRequest]) -> list[CaptionResult]:
        return caption_by_limit(requests, self.generate_ids, self.decode)
