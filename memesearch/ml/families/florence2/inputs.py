"""Florence-2 inputs without transformers: image preprocessing, task prompts, output clean-up.

Each piece mirrors ``Florence2Processor`` / ``CLIPImageProcessor`` (PIL backend)
of transformers 5 exactly; the parity tests compare them on the tiny checkpoint.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from memesearch.errors import InvalidInputError, ModelUnavailableError

#: Task tokens the processor replaces by a natural-language instruction.
TASK_PROMPTS_WITHOUT_INPUT = {
    "<OCR>": "What is the text in the image?",
    "<OCR_WITH_REGION>": "What is the text in the image, with regions?",
    "<CAPTION>": "What does the image describe?",
    "<DETAILED_CAPTION>": "Describe in detail what is shown in the image.",
    "<MORE_DETAILED_CAPTION>": "Describe with a paragraph what is shown in the image.",
    "<OD>": "Locate the objects with category name in the image.",
    "<DENSE_REGION_CAPTION>": "Locate the objects in the image, with their descriptions.",
    "<REGION_PROPOSAL>": "Locate the region proposals in the image.",
}
#: Task tokens followed by user text, e.g. ``<CAPTION_TO_PHRASE_GROUNDING> a red car``.
TASK_PROMPTS_WITH_INPUT = {
    "<CAPTION_TO_PHRASE_GROUNDING>": "Locate the phrases in the caption: {input}",
    "<REFERRING_EXPRESSION_SEGMENTATION>": "Locate {input} in the image with mask",
    "<REGION_TO_SEGMENTATION>": "What is the polygon mask of region {input}",
    "<OPEN_VOCABULARY_DETECTION>": "Locate {input} in the image.",
    "<REGION_TO_CATEGORY>": "What is the region {input}?",
    "<REGION_TO_DESCRIPTION>": "What does the region {input} describe?",
    "<REGION_TO_OCR>": "What text is in the region {input}?",
}


def construct_prompt(prompt: str) -> str:
    """The sentence the model was trained on for a task token (same rules as the processor)."""
    for task_token, sentence in TASK_PROMPTS_WITHOUT_INPUT.items():
        if task_token in prompt:
            if prompt != task_token:
                raise InvalidInputError(
                    f"Florence-2 task token {task_token} must be the whole prompt, got {prompt!r}"
                )
            prompt = sentence
            break
    for task_token, template in TASK_PROMPTS_WITH_INPUT.items():
        if task_token in prompt:
            prompt = template.format(input=prompt.replace(task_token, "").strip())
            break
    return prompt


def clean_text(text: str) -> str:
    """Florence's ``pure_text`` post-processing: drop sequence markers, trim."""
    for marker in ("</s>", "<s>", "<pad>"):
        text = text.replace(marker, "")
    return text.strip()


@dataclass(frozen=True)
class ImageSettings:
    """The preprocessor_config.json values that matter at run time."""

    height: int
    width: int
    resample: int
    rescale_factor: float
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    image_seq_length: int

    @classmethod
    def from_model_dir(cls, model_dir: Path) -> ImageSettings:
        path = Path(model_dir) / "preprocessor_config.json"
        if not path.is_file():
            raise ModelUnavailableError(f"Florence-2 preprocessor config not found: {path}")
        config = json.loads(path.read_text())
        if config.get("do_center_crop"):
            # Every Florence-2 checkpoint resizes straight to a square; a crop would need more code.
            raise ModelUnavailableError(f"{path}: do_center_crop=true is not supported for Florence-2")
        size = config.get("size", {})
        return cls(
            height=int(size["height"]),
            width=int(size["width"]),
            resample=int(config.get("resample", 3)),
            rescale_factor=float(config.get("rescale_factor", 1 / 255)),
            mean=tuple(config.get("image_mean", [0.485, 0.456, 0.406])),
            std=tuple(config.get("image_std", [0.229, 0.224, 0.225])),
            image_seq_length=int(config.get("image_seq_length", 577)),
        )


def to_rgb(image: Image.Image) -> Image.Image:
    """RGB, with transparency composited onto white like transformers' ``convert_to_rgb``."""
    has_alpha = "A" in image.getbands() or image.info.get("transparency") is not None
    if not has_alpha:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def preprocess_image(image: Image.Image, settings: ImageSettings) -> np.ndarray:
    """One image -> float32 (3, H, W): PIL resize, rescale in float64, normalise in float32."""
    resized = to_rgb(image).resize((settings.width, settings.height), resample=settings.resample)
    pixels = (np.asarray(resized).astype(np.float64) * settings.rescale_factor).astype(np.float32)
    mean = np.asarray(settings.mean, dtype=np.float32)
    std = np.asarray(settings.std, dtype=np.float32)
    return ((pixels - mean) / std).transpose(2, 0, 1).copy()


def preprocess_images(images: list[Image.Image], settings: ImageSettings) -> np.ndarray:
    return np.stack([preprocess_image(image, settings) for image in images])
