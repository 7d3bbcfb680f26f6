"""SmolVLM captions with PyTorch + transformers (the fallback when the ONNX files are absent).

Uses ``Idefics3ForConditionalGeneration`` and the checkpoint's own ``AutoProcessor`` (chat
template, image splitting), greedy ``generate`` and left padding for batches, and the same
text clean-up as the ONNX backend so both produce the same captions.
"""

from __future__ import annotations

from pathlib import Path

from memesearch.errors import ModelUnavailableError, require
from memesearch.ml.base import CaptionRequest, CaptionResult
from memesearch.ml.families.smolvlm.prompt import clean_caption
from memesearch.ml.families.common.torch_backend import TorchCaptioner

# torch-only module: without torch its import fails here, naming the extra to install.
require("torch", extra="torch", purpose="The PyTorch SmolVLM backend")

DEFAULT_REPO = "HuggingFaceTB/SmolVLM-256M-Instruct"


class TorchSmolVLMCaptioner(TorchCaptioner):
    family_name = "SmolVLM"

    def __init__(self, model_dir_or_repo: str | Path = DEFAULT_REPO, *, image_longest_edge: int | None = None,
                 **options) -> None:
        """``image_longest_edge``: as in :class:`OnnxSmolVLMCaptioner` (the processor's first resize)."""
        super().__init__(model_dir_or_repo, **options)
        self.image_longest_edge = image_longest_edge
        self.model_id = f"smolvlm:{Path(self.source).name}"

    def _load(self) -> None:
        _, transformers = self._import_torch()
        dtype = self.torch_dtype
        try:
            self.processor = _cache_first(_processor_loader(transformers), self.source, self.revision)
            self.model = _cache_first(
                transformers.Idefics3ForConditionalGeneration.from_pretrained, self.source, self.revision, dtype=dtype
            ).eval()
        except (OSError, ValueError) as exc:  # missing files, no network, unknown repo, no processor
            raise ModelUnavailableError(
                f"cannot load SmolVLM from {self.source!r}: {exc}",
                hint=f"download {DEFAULT_REPO} with `memesearch models pull` or point to a local checkpoint folder",
            ) from exc
        self.processor.tokenizer.padding_side = "left"
        eos = self.model.generation_config.eos_token_id
        self._eos_ids = set([eos] if isinstance(eos, int) else (eos or []))

    def _caption_batch(self, requests: list[CaptionRequest]) -> list[CaptionResult]:
        generated = self.generate_ids(requests)
        tokenizer = self.processor.tokenizer
        return [
            CaptionResult(text=clean_caption(tokenizer.decode(ids, skip_special_tokens=True)), token_ids=ids)
            for ids in generated
        ]

    def generate_ids(self, requests: list[CaptionRequest]) -> list[list[int]]:
        """Greedy token ids per request (without prompt and EOS)."""
        self.ensure_loaded()
        texts = [
            self.processor.apply_chat_template(
                [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": request.prompt}]}],
                add_generation_prompt=True,
            )
            for request in requests
        ]
        images = [[request.image] for request in requests]
        image_kwargs = {"size": {"longest_edge": self.image_longest_edge}} if self.image_longest_edge else {}
        inputs = self.processor(text=texts, images=images, padding=True, return_tensors="pt", **image_kwargs)
        inputs["pixel_values"] = inputs["pixel_values"].to(self.model.dtype)
        with self._torch.no_grad():
            output = self.model.generate(
                **inputs, max_new_tokens=max(request.max_new_tokens for request in requests), do_sample=False
            )
        prompt_length = inputs["input_ids"].shape[1]
        results = []
        for request, row in zip(requests, output[:, prompt_length:].tolist()):
            ids: list[int] = []
            for token in row[: request.max_new_tokens]:
                if token in self._eos_ids:
                    break
                ids.append(token)
            results.append(ids)
        return results


def _cache_first(loader, source: str, revision: str | None, **kwargs):
    """Use the local folder or the Hugging Face cache when they have the files; only then the
    network (whose retries take minutes when offline)."""
    if not Path(source).is_dir():
        try:
            return loader(source, revision=revision, local_files_only=True, **kwargs)
        except OSError:
            pass
    return loader(source, revision=revision, **kwargs)


def _processor_loader(transformers):
    # transformers >= 5 may pick a torchvision image processor whose Lanczos resize differs
    # from the PIL one the model (and our ONNX backend) uses; ask for PIL where supported.
    def load(source, **kwargs):
        try:
            return transformers.AutoProcessor.from_pretrained(source, backend="pil", **kwargs)
        except TypeError:
            return transformers.AutoProcessor.from_pretrained(source, **kwargs)

    return load
