"""Rendered sample memes for the quick-start demo and for tests.

Classic meme style (white bold text, thick black outline, usually ALL CAPS) over
synthetic backgrounds, in every format the library must handle: PNG, PNG with
alpha, JPEG, WEBP and animated GIF. Output is a pure function of ``seed``: same
seed, same bytes (given the same fonts and Pillow).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from memesearch.library.fonts import FontChoice, find_bold_fonts, load_font
from memesearch.library.sample_captions import (
    ENGLISH_CAPTIONS,
    FOREIGN_CAPTIONS,
    SPACELESS_CAPTION,
)

SPACELESS_INDEX = 2  # early, so that even a handful of samples includes it
FOREIGN_EVERY = 6  # indices 5, 11, 17, ... carry a non-English caption while any are left

# 10% GIF, 10% PNG with alpha, 20% JPEG, 20% WEBP, 40% plain PNG.
FORMAT_CYCLE = ("png", "jpeg", "png", "gif", "webp", "png", "jpeg", "png-alpha", "webp", "png")
WIDTHS = (480, 512, 560, 600, 640)
ASPECTS = (0.75, 0.8, 0.9, 1.0)
MIN_FONT_SIZE = 16


@dataclass(frozen=True)
class SampleMeme:
    path: Path
    #: Exactly the caption text rendered (all boxes joined with a space);
    #: for the spaceless meme, the caption with its spaces.
    text: str
    #: A made-up template name describing layout and scene, e.g. "drake-style".
    template: str
    #: "png", "jpeg", "webp" or "gif" (Pillow's format name, lower-cased).
    format: str
    animated: bool = False
    has_alpha: bool = False


def render_sample_memes(out_dir: Path, *, count: int = 24, seed: int = 0) -> list[SampleMeme]:
    """Render ``count`` sample memes with distinct captions into ``out_dir``; deterministic per ``seed``."""
    if count < 0:
        raise ValueError(f"count must not be negative, got {count}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    fonts = find_bold_fonts()
    captions = _pick_captions(count, rng)
    memes = []
    for index, caption in enumerate(captions):
        kind = FORMAT_CYCLE[index % len(FORMAT_CYCLE)]
        memes.append(_render_one(out_dir, index, caption, kind, fonts, random.Random(rng.getrandbits(64))))
    return memes


def _pick_captions(count: int, rng: random.Random) -> list[str]:
    """The spaceless one at SPACELESS_INDEX, a non-English one every FOREIGN_EVERY, English otherwise.

    Past the ~110 captions we have, captions repeat with "part N" appended so
    that texts stay distinct (only the demo asks for that many).
    """
    english, foreign = list(ENGLISH_CAPTIONS), list(FOREIGN_CAPTIONS)
    rng.shuffle(english)
    rng.shuffle(foreign)
    pool = english + foreign
    captions: list[str] = []
    for index in range(count):
        if index == SPACELESS_INDEX:
            captions.append(SPACELESS_CAPTION)
        elif index % FOREIGN_EVERY == FOREIGN_EVERY - 1 and foreign:
            captions.append(foreign.pop())
        elif english or foreign:
            captions.append(english.pop() if english else foreign.pop())
        else:
            repeat = len(captions) - len(pool) - 1  # how many repeats came before
            captions.append(f"{pool[repeat % len(pool)]} part {repeat // len(pool) + 2}")
    return captions


def _render_one(out_dir: Path, index: int, caption: str, kind: str, fonts, rng: random.Random) -> SampleMeme:
    width = rng.choice(WIDTHS)
    height = int(width * rng.choice(ASPECTS))
    font = rng.choice(fonts)
    spaceless = caption == SPACELESS_CAPTION
    shout = spaceless or rng.random() < 0.8
    rendered = caption.upper() if shout else caption
    if spaceless:
        layout = "top"
    elif kind in ("gif", "png-alpha"):
        layout = rng.choice(("top-bottom", "top", "bottom"))
    else:
        layout = rng.choice(("top-bottom", "top-bottom", "top", "bottom", "three-box", "two-panel"))
    boxes = _split_words(rendered, {"top": 1, "bottom": 1, "top-bottom": 2, "three-box": 3, "two-panel": 2}[layout])
    if spaceless:
        boxes = [rendered.replace(" ", "")]
    scene = rng.choice(("gradient", "shapes", "noise", "sunset"))
    np_rng = np.random.default_rng(rng.getrandbits(32))

    frames: list[Image.Image]
    if layout == "two-panel":
        template = "drake-style"
        frames = [_two_panel(width, height, boxes, font, rng, np_rng)]
    else:
        template = f"{layout}-{scene}"
        frame_count = rng.randint(3, 5) if kind == "gif" else 1
        scene_seed = rng.getrandbits(32)  # one per frame below: GIF frames differ, reproducibly
        frames = [
            _background(scene, width, height, random.Random(scene_seed + frame), np_rng)
            for frame in range(frame_count)
        ]
        if kind == "png-alpha":
            template = f"sticker-{template}"
            frames = [_cut_out(frames[0], np_rng)]
        for frame in frames:  # the caption on every frame, the first one included
            _draw_boxes(frame, boxes, layout, font)
    if kind == "gif":
        template = f"animated-{template}"

    ext = {"png": "png", "png-alpha": "png", "jpeg": "jpg", "webp": "webp", "gif": "gif"}[kind]
    path = out_dir / f"sample-{index:03d}-{template}.{ext}"
    _save(frames, path, kind)
    text = caption if spaceless else " ".join(boxes)
    return SampleMeme(
        path=path,
        text=text,
        template=template,
        format="png" if kind == "png-alpha" else kind,
        animated=len(frames) > 1,
        has_alpha=kind == "png-alpha",
    )


def _split_words(text: str, parts: int) -> list[str]:
    """Split at spaces into ``parts`` chunks of roughly equal length."""
    words = text.split()
    parts = min(parts, len(words))
    chunks: list[list[str]] = []
    remaining = list(words)
    for part in range(parts, 0, -1):
        target = sum(len(word) + 1 for word in remaining) / part
        chunk: list[str] = []
        while remaining and len(remaining) > part - 1 and (not chunk or len(" ".join(chunk)) < target - 2):
            chunk.append(remaining.pop(0))
        chunks.append(chunk)
    return [" ".join(chunk) for chunk in chunks]


# --- backgrounds -----------------------------------------------------------


def _random_colour(rng: random.Random, lo: int = 0, hi: int = 255) -> tuple[int, int, int]:
    return (rng.randint(lo, hi), rng.randint(lo, hi), rng.randint(lo, hi))


def _gradient(width: int, height: int, top: tuple, bottom: tuple, horizontal: bool = False) -> Image.Image:
    steps = np.linspace(0.0, 1.0, width if horizontal else height)[:, None]
    ramp = (1 - steps) * np.array(top) + steps * np.array(bottom)
    if horizontal:
        pixels = np.broadcast_to(ramp[None, :, :], (height, width, 3))
    else:
        pixels = np.broadcast_to(ramp[:, None, :], (height, width, 3))
    return Image.fromarray(pixels.round().astype(np.uint8), "RGB")


def _background(scene: str, width: int, height: int, rng: random.Random, np_rng) -> Image.Image:
    if scene == "gradient":
        return _gradient(width, height, _random_colour(rng), _random_colour(rng), horizontal=rng.random() < 0.4)
    if scene == "noise":
        # Smooth blotches plus film grain: busy, photo-like texture behind the text.
        coarse = np_rng.integers(0, 256, size=(max(2, height // 48), max(2, width // 48), 3), dtype=np.uint8)
        image = Image.fromarray(coarse, "RGB").resize((width, height), Image.Resampling.BICUBIC)
        grain = np_rng.normal(0, 18, size=(height, width, 1))
        return Image.fromarray(np.clip(np.asarray(image, dtype=np.float64) + grain, 0, 255).astype(np.uint8))
    image = _gradient(width, height, _random_colour(rng, 120), _random_colour(rng, 0, 140))
    draw = ImageDraw.Draw(image)
    if scene == "sunset":
        radius = rng.randint(width // 10, width // 5)
        cx, cy = rng.randint(radius, width - radius), rng.randint(height // 3, height // 2)
        draw.ellipse((cx - radius, cy - radius, cx + radius, cy + radius), fill=(255, rng.randint(150, 230), 60))
        for _ in range(3):  # hills in front of the sun
            peak = (rng.randint(0, width), rng.randint(height // 2, 3 * height // 4))
            draw.polygon([(peak[0] - width, height), peak, (peak[0] + width, height)], fill=_random_colour(rng, 10, 110))
        return image
    for _ in range(rng.randint(6, 14)):  # "shapes"
        x0, y0 = rng.randint(-40, width), rng.randint(-40, height)
        box = (x0, y0, x0 + rng.randint(30, width // 2), y0 + rng.randint(30, height // 2))
        shape = rng.choice(("ellipse", "rectangle", "triangle"))
        if shape == "triangle":
            draw.polygon([(box[0], box[3]), ((box[0] + box[2]) // 2, box[1]), (box[2], box[3])], fill=_random_colour(rng))
        else:
            getattr(draw, shape)(box, fill=_random_colour(rng))
    return image


def _cut_out(image: Image.Image, np_rng) -> Image.Image:
    """A sticker: an opaque rounded card, a half-transparent rim, nothing outside.

    Fully transparent pixels hold random junk colours, so a decoder that drops
    alpha instead of flattening on white shows noise behind the text.
    """
    width, height = image.size
    alpha = Image.new("L", image.size, 0)
    draw = ImageDraw.Draw(alpha)
    margin = min(width, height) // 8
    draw.rounded_rectangle((margin // 2, margin // 2, width - margin // 2, height - margin // 2), radius=margin, fill=110)
    draw.rounded_rectangle((margin, margin, width - margin, height - margin), radius=margin, fill=255)
    junk = Image.fromarray(np_rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8), "RGB")
    rgba = Image.composite(image, junk, alpha.point(lambda value: 255 if value else 0)).convert("RGBA")
    rgba.putalpha(alpha)
    return rgba  # the caption drawn later is opaque, over transparent parts too


# --- text --------------------------------------------------------------------


def _stroke_for(size: int) -> int:
    return max(2, size // 12)


def _wrap(text: str, font, max_width: int, stroke: int) -> list[str] | None:
    """Greedy word wrap; None when a single word is wider than ``max_width``."""
    lines: list[str] = []
    for word in text.split():
        candidate = f"{lines[-1]} {word}" if lines else word
        if lines and font.getlength(candidate) + 2 * stroke <= max_width:
            lines[-1] = candidate
        elif font.getlength(word) + 2 * stroke <= max_width:
            lines.append(word)
        else:
            return None
    return lines


def _fit(text: str, font_choice: FontChoice, max_width: int, max_height: int, max_lines: int, start: int):
    """The largest font size at which ``text`` wraps into the box: (font, lines, stroke, line height)."""
    for size in range(start, MIN_FONT_SIZE - 1, -2):
        font = load_font(font_choice, size)
        stroke = _stroke_for(size)
        lines = _wrap(text, font, max_width, stroke)
        line_height = int(size * 1.18) + 2 * stroke
        if lines and len(lines) <= max_lines and line_height * len(lines) <= max_height:
            return font, lines, stroke, line_height
    # Nothing fits (a huge word or box): smallest size, one word per line if need be.
    font = load_font(font_choice, MIN_FONT_SIZE)
    stroke = _stroke_for(MIN_FONT_SIZE)
    lines = _wrap(text, font, max_width, stroke) or text.split()
    return font, lines, stroke, int(MIN_FONT_SIZE * 1.18) + 2 * stroke


def _draw_text_block(image, text, font_choice, box, *, valign: str, outline: bool = True, max_lines: int = 3):
    left, top, right, bottom = box
    width, height = right - left, bottom - top
    font, lines, stroke, line_height = _fit(text, font_choice, width, height, max_lines, start=max(24, height // 2))
    block = line_height * len(lines)
    y = {"top": top, "middle": top + (height - block) // 2, "bottom": bottom - block}[valign]
    draw = ImageDraw.Draw(image)
    for line in lines:
        if outline:
            draw.text(((left + right) // 2, y + stroke), line, font=font, fill="white", anchor="ma",
                      stroke_width=stroke, stroke_fill="black")
        else:
            draw.text(((left + right) // 2, y + stroke), line, font=font, fill="black", anchor="ma")
        y += line_height


def _draw_boxes(image: Image.Image, boxes: list[str], layout: str, font: FontChoice) -> None:
    width, height = image.size
    pad = max(8, width // 40)
    band = int(height * (0.26 if len(boxes) == 3 else 0.32))
    regions = {
        "top": (pad, pad, width - pad, pad + band),
        "middle": (pad, (height - band) // 2, width - pad, (height + band) // 2),
        "bottom": (pad, height - pad - band, width - pad, height - pad),
    }
    slots = {"top": ["top"], "bottom": ["bottom"], "top-bottom": ["top", "bottom"],
             "three-box": ["top", "middle", "bottom"]}[layout]
    for text, slot in zip(boxes, slots):
        _draw_text_block(image, text, font, regions[slot], valign=slot)


def _two_panel(width, height, boxes, font: FontChoice, rng: random.Random, np_rng) -> Image.Image:
    """Drake-style: pictures on the left, black text on white panels on the right."""
    image = Image.new("RGB", (width, height), "white")
    half_w, half_h = width // 2, height // 2
    for row, text in enumerate(boxes):
        picture = _background(rng.choice(("shapes", "sunset", "gradient")), half_w, half_h, rng, np_rng)
        image.paste(picture, (0, row * half_h))
        pad = max(8, width // 40)
        region = (half_w + pad, row * half_h + pad, width - pad, (row + 1) * half_h - pad)
        _draw_text_block(image, text, font, region, valign="middle", outline=False, max_lines=4)
    ImageDraw.Draw(image).line((0, half_h, width, half_h), fill="black", width=3)
    return image


# --- encoding -----------------------------------------------------------------


def _save(frames: list[Image.Image], path: Path, kind: str) -> None:
    first = frames[0]
    if kind == "gif":
        # No dithering: dotted letter edges would be an artefact of ours, not of real GIFs.
        paletted = [frame.quantize(colors=128, dither=Image.Dither.NONE) for frame in frames]
        paletted[0].save(path, format="GIF", save_all=True, append_images=paletted[1:], duration=150, loop=0)
    elif kind == "jpeg":
        first.save(path, format="JPEG", quality=88)
    elif kind == "webp":
        first.save(path, format="WEBP", quality=85, method=4)
    else:
        first.save(path, format="PNG")
