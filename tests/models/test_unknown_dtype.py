"""An ONNX dtype a family does not publish is the same error in every family (torch-free)."""

from __future__ import annotations

import pytest

from memesearch.errors import ModelUnavailableError
from memesearch.ml.families import family_module

FAMILIES = ("smolvlm", "florence2", "moondream", "clip")


@pytest.mark.parametrize("family", FAMILIES)
def test_an_unknown_dtype_raises_model_unavailable_naming_it(family):
    onnx = family_module("onnx", family)
    with pytest.raises(ModelUnavailableError) as caught:
        onnx.required_files("fp7")
    assert "'fp7'" in caught.value.message
    assert onnx.required_files("int8")  # a published dtype still works
