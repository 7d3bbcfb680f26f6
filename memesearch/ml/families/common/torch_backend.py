"""What the PyTorch captioners share: where the checkpoint comes from, its dtype, and how
torch is imported (lazily, with a clear error naming the ``[torch]`` extra)."""

from __future__ import annotations

from pathlib import Path

from memesearch.errors import ModelUnavailableError, require
from memesearch.ml.base import Captioner

# torch-only module: without torch its import fails here, naming the extra to install.
require("torch", extra="torch", purpose="The PyTorch caption backends")

TORCH_DTYPES = {"fp32": "float32", "fp16": "float16", "bf16": "bfloat16"}


class TorchCaptioner(Captioner):
    backend = "torch"
    batch_size = 4
    #: Used in error messages, e.g. "Florence-2".
    family_name = ""

    def __init__(self, model_dir_or_repo: str | Path, *, revision: str | None = None, dtype: str = "fp32",
                 threads: int | None = None) -> None:
        super().__init__()
        if dtype not in TORCH_DTYPES:
            raise ModelUnavailableError(
                f"unknown torch dtype {dtype!r} for {self.family_name}", hint=f"use one of: {', '.join(TORCH_DTYPES)}"
            )
        self.source = str(model_dir_or_repo)
        self.revision = revision
        self.dtype = dtype
        self.threads = threads
        self._torch = None

    def _import_torch(self):
        """(torch, transformers), with this captioner's thread count applied."""
        purpose = f"{self.family_name} on PyTorch"
        self._torch = require("torch", extra="torch", purpose=purpose)
        transformers = require("transformers", extra="torch", purpose=purpose)
        if self.threads:
            self._torch.set_num_threads(self.threads)
        return self._torch, transformers

    @property
    def torch_dtype(self):
        return getattr(self._torch, TORCH_DTYPES[self.dtype])
