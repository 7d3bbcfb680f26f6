"""A labelled set of template memes for measuring template grouping.

Template pictures are procedural "photo-like" images (smooth colour fields, blobs,
shapes and multi-scale texture), each captioned several ways and then altered the
way memes are altered in the wild: resized, cropped, re-compressed, framed and
watermarked. Distractors share what must NOT group memes: the same caption text,
font and layout on other pictures, and plain backgrounds. Output is a pure function
of the seed (given the same fonts and Pillow).
"""

from __future__ import annotations

import io
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from memesearch.library.fonts import find_bold_fonts, load_font
from memesearch.library.sample_captions import ENGLISH_CAPTIONS
from memesearch.library.samples import _draw_boxes, _draw_text_block, _split_words

LAYOUTS = ("top-bottom", "top", "bottom", "banner")


@dataclass(frozen=True)
class LabelledMeme:
    path: Path
    #: The template picture it was made from; None for a distractor whose picture is unique.
    template: int | None
    #: What was done to it, for reports ("blank", "caption+crop+jpeg40", ...).
    recipe: str


def photo_like(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """A textured, photo-like picture: what a template's base image looks like to a feature detector."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    base = rng.uniform(0, 255, 3) + (xs / width)[..., None] * rng.uniform(-120, 120, 3) \
        + (ys / height)[..., None] * rng.uniform(-120, 120, 3)
    for _ in range(rng.integers(4, 9)):  # soft colour blobs
        cx, cy = rng.uniform(0, width), rng.uniform(0, height)
        radius = rng.uniform(0.08, 0.35) * max(width, height)
        weight = np.exp(-((xs - cx) ** 2 + (ys - cy) ** 2) / (2 * radius**2))[..., None]
        base = base * (1 - weight) + weight * rng.uniform(0, 255, 3)
    texture = np.zeros((height, width), np.float32)
    for octave in (4, 8, 16, 32, 64):  # multi-scale noise: the fine detail photos have
        small = rng.normal(0, 1, (max(2, height * octave // 512), max(2, width * octave // 512)))
        layer = Image.fromarray(small.astype(np.float32), mode="F").resize((width, height), Image.Resampling.BICUBIC)
        texture += np.asarray(layer) * (40 / octave**0.5)
    image = Image.fromarray(np.clip(base + texture[..., None], 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(rng.integers(6, 14)):  # objects with edges and corners
        x0, y0 = rng.uniform(0, width), rng.uniform(0, height)
        size = rng.uniform(0.04, 0.2) * max(width, height)
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        kind = rng.integers(0, 3)
        if kind == 0:
            draw.ellipse((x0, y0, x0 + size, y0 + size * rng.uniform(0.5, 1.5)), fill=colour)
        elif kind == 1:
            draw.rectangle((x0, y0, x0 + size, y0 + size * rng.uniform(0.3, 1.2)), fill=colour)
        else:
            points = [(x0 + rng.uniform(-size, size), y0 + rng.uniform(-size, size)) for _ in range(rng.integers(3, 6))]
            draw.polygon(points, fill=colour)
    return image.filter(ImageFilter.GaussianBlur(0.6))


def plain_background(width: int, height: int, rng: np.random.Generator) -> Image.Image:
    """A flat or gently graded background: a caption on it shares nothing but text."""
    ys = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    top, bottom = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    field = top * (1 - ys) + bottom * ys
    return Image.fromarray(np.broadcast_to(field, (height, width, 3)).astype(np.uint8))


def caption(image: Image.Image, text: str, layout: str, font) -> Image.Image:
    """Classic white-on-black-outline captions, or a white banner with black text above the picture."""
    image = image.copy()
    if layout == "banner":
        band = int(image.height * 0.3)
        canvas = Image.new("RGB", (image.width, image.height + band), "white")
        canvas.paste(image, (0, band))
        pad = max(8, image.width // 30)
        _draw_text_block(canvas, text, font, (pad, pad, image.width - pad, band - pad), valign="middle", outline=False)
        return canvas
    boxes = _split_words(text.upper(), 2 if layout == "top-bottom" else 1)
    _draw_boxes(image, boxes, layout, font)
    return image


def crop(image: Image.Image, left: float, top: float, right: float, bottom: float) -> Image.Image:
    """Cut the given fraction off each side."""
    w, h = image.size
    return image.crop((int(w * left), int(h * top), w - int(w * right), h - int(h * bottom)))


def resize(image: Image.Image, scale: float) -> Image.Image:
    size = (max(16, round(image.width * scale)), max(16, round(image.height * scale)))
    return image.resize(size, Image.Resampling.BICUBIC if scale > 1 else Image.Resampling.LANCZOS)


def frame(image: Image.Image, fraction: float, colour: tuple[int, int, int]) -> Image.Image:
    """A solid border ``fraction`` of the long side wide on every side."""
    pad = int(max(image.size) * fraction)
    framed = Image.new("RGB", (image.width + 2 * pad, image.height + 2 * pad), colour)
    framed.paste(image, (pad, pad))
    return framed


def watermark(image: Image.Image, text: str) -> Image.Image:
    image = image.copy()
    font = load_font(find_bold_fonts()[0], max(12, image.width // 30))
    ImageDraw.Draw(image).text((image.width - 8, image.height - 8), text, font=font, anchor="rd", fill=(255, 255, 255))
    return image


def jpeg(image: Image.Image, quality: int) -> Image.Image:
    buffer = io.BytesIO()
    image.convert("RGB").save(buffer, "JPEG", quality=quality)
    return Image.open(io.BytesIO(buffer.getvalue())).convert("RGB")


def alter(image: Image.Image, rng: random.Random, steps: list[str]) -> tuple[Image.Image, list[str]]:
    """Apply the in-the-wild changes: crop (≤ 10 % a side), resize (50–200 %), border, watermark, JPEG (q ≥ 40)."""
    done = []
    if rng.random() < 0.6:
        image = crop(image, *(rng.uniform(0, 0.1) for _ in range(4)))
        done.append("crop")
    scale = rng.choice((0.5, 0.7, 1.0, 1.4, 2.0)) if rng.random() < 0.7 else 1.0
    if scale != 1.0:
        image = resize(image, scale)
        done.append(f"x{scale:g}")
    if rng.random() < 0.3:
        image = frame(image, rng.uniform(0.03, 0.1), tuple(rng.randrange(256) for _ in range(3)))
        done.append("border")
    if rng.random() < 0.3:
        image = watermark(image, "@memelord" + str(rng.randrange(100)))
        done.append("watermark")
    if rng.random() < 0.7:
        quality = rng.choice((40, 55, 70, 90))
        image = jpeg(image, quality)
        done.append(f"jpeg{quality}")
    return image, steps + done


def render_template_set(out_dir: Path, *, templates: int = 30, variants: int = 4, distractors: int = 40,
                        seed: int = 0) -> list[LabelledMeme]:
    """``templates`` pictures × (one blank + ``variants`` captioned, altered versions), plus distractors."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    fonts = find_bold_fonts()
    captions = list(ENGLISH_CAPTIONS)
    rng.shuffle(captions)
    shared_captions = captions[:8]  # distractors reuse these: same text, font and layout, other picture
    made: list[LabelledMeme] = []

    def save(image: Image.Image, template: int | None, recipe: list[str]) -> None:
        path = out_dir / f"{len(made):04d}-{'t%03d' % template if template is not None else 'other'}.png"
        image.save(path)
        made.append(LabelledMeme(path, template, "+".join(recipe)))

    for template in range(templates):
        width = rng.choice((480, 560, 640, 720))
        picture = photo_like(width, int(width * rng.choice((0.75, 0.9, 1.0, 1.2))), np_rng)
        save(picture, template, ["blank"])
        for variant in range(variants):
            text = shared_captions[(template + variant) % len(shared_captions)]
            layout = LAYOUTS[(template + variant) % len(LAYOUTS)]
            captioned = caption(picture, text, layout, fonts[rng.randrange(len(fonts))])
            altered, recipe = alter(captioned, rng, [f"caption-{layout}"])
            save(altered, template, recipe)

    for index in range(distractors):
        width = rng.choice((480, 560, 640))
        height = int(width * rng.choice((0.75, 1.0)))
        # Half are plain backgrounds, half are unique pictures: both carry the shared captions and layouts.
        picture = plain_background(width, height, np_rng) if index % 2 else photo_like(width, height, np_rng)
        text = shared_captions[index % len(shared_captions)]
        layout = LAYOUTS[index % len(LAYOUTS)]
        captioned = caption(picture, text, layout, fonts[index % len(fonts)])
        altered, recipe = alter(captioned, rng, ["distractor", "plain" if index % 2 else "picture", layout])
        save(altered, None, recipe)
    return made
