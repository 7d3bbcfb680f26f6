"""What our transformers-to-ONNX exporters share."""

from __future__ import annotations

import shutil
from pathlib import Path

#: Every onnxruntime from 1.14 on runs opset 17, and it has LayerNormalization.
OPSET = 17

#: Tokenizer, processor and config files the runtime reads next to the ONNX graphs; those a
#: checkpoint lacks are skipped.
CHECKPOINT_FILES = (
    "config.json",
    "generation_config.json",
    "preprocessor_config.json",
    "processor_config.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "added_tokens.json",
    "vocab.json",
    "merges.txt",
    "chat_template.json",
    "chat_template.jinja",
)


def copy_checkpoint_files(checkpoint_dir: Path, out_dir: Path) -> None:
    for name in CHECKPOINT_FILES:
        if (checkpoint_dir / name).is_file():
            shutil.copy2(checkpoint_dir / name, out_dir / name)
