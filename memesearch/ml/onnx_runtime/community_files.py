"""File names of the onnx-community exports (Florence-2, SmolVLM): ``onnx/<part><suffix>.onnx``,
one suffix per dtype."""

from __future__ import annotations

from memesearch.errors import ModelUnavailableError

#: dtype name -> file-name suffix, as published in the onnx-community repos.
DTYPE_SUFFIXES = {
    "fp32": "",
    "fp16": "_fp16",
    "int8": "_int8",
    "uint8": "_uint8",
    "quantized": "_quantized",
    "q4": "_q4",
    "q4f16": "_q4f16",
    "bnb4": "_bnb4",
}


def dtype_suffix(dtype: str, family: str) -> str:
    """The suffix of ``dtype``; an unknown one is refused, naming the family's model."""
    try:
        return DTYPE_SUFFIXES[dtype]
    except KeyError:
        known = ", ".join(DTYPE_SUFFIXES)
        raise ModelUnavailableError(f"unknown {family} ONNX dtype {dtype!r}", hint=f"use one of: {known}") from None


def onnx_file(part: str, dtype: str, family: str) -> str:
    """Relative path of one exported graph, e.g. ``onnx/decoder_model_merged_int8.onnx``."""
    return f"onnx/{part}{dtype_suffix(dtype, family)}.onnx"
