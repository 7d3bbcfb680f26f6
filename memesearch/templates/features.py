"""What template grouping keeps of one meme: a small global vector and local features.

Captions are the trap: two memes that share only the Impact font or the same words
match letter for letter. So the caption boxes OCR found are masked out first, the
uniform frame around the picture (added borders, a white caption banner once its
text is masked) is trimmed, and only then is the picture described:

- ``vector``: the picture's colour layout (8×8 cells × RGB after a blur), mean-centred
  and unit length. Cheap to compare with the whole library, so it picks candidates.
- ``points`` + ``descriptors``: ORB corners and their binary descriptors on the
  picture scaled to ``WORK_SIDE``; geometric verification of candidates uses them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

import cv2
import numpy as np
from PIL import Image

from memesearch.templates.record import VECTOR_DIM, VECTOR_SIDE, TemplateFeatures

#: Long side of the picture the local features are computed on (the probe in DESIGN.md used 480).
WORK_SIDE = 480
#: ORB keypoints kept per meme (about 18 KB stored per meme). With FAST_THRESHOLD 5,
#: smooth pictures still get corners: on the synthetic set a heavily captioned variant
#: cropped 10 % a side keeps 17 verified matches with its blank template, against 3 with
#: 300 keypoints at ORB's default threshold (bench/bench_templates.py).
MAX_FEATURES = 500
FAST_THRESHOLD = 5
#: Pyramid levels: pictures are compared at one working size, so the scales to cover are
#: small (crops, trimmed banners); 5 levels group as well as ORB's default 8 at 70 % of the time.
PYRAMID_LEVELS = 5
#: A frame row/column is "uniform" when its pixels stay this close to the frame colour.
FRAME_TOLERANCE = 12
#: A side may lose leftovers up to LEFTOVER of its length before a uniform band of at least
#: MIN_BAND that ends within BAND (a banner whose cut-off first line OCR missed).
LEFTOVER = 0.08
MIN_BAND = 0.03
BAND = 0.45
#: Caption boxes are grown by this fraction of the image's short side (outlines, descenders).
BOX_MARGIN = 0.015
#: The working copy keeps this much more than WORK_SIDE, so a trimmed frame costs no detail.
WORK_MARGIN = 1.25
#: Width of the ring around a caption box whose median colour paints the box.
RING_PX = 4

Box = tuple[float, float, float, float]


def extract(image: Image.Image, text_boxes: list[Box] = ()) -> TemplateFeatures:
    """The template features of an RGB image whose caption boxes (fractions of its size) are given."""
    rgb = _work_rgb(image)
    mask, boxes = _caption_mask(rgb.shape[:2], text_boxes)
    rgb = _fill_masked(rgb, mask, boxes)
    grey = cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY)
    top, bottom, left, right = _picture_bounds(grey)
    rgb, grey, mask = rgb[top:bottom, left:right], grey[top:bottom, left:right], mask[top:bottom, left:right]
    scale = WORK_SIDE / max(grey.shape)
    if scale != 1.0:
        size = (max(1, round(grey.shape[1] * scale)), max(1, round(grey.shape[0] * scale)))
        grey = cv2.resize(grey, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
        mask = cv2.resize(mask, size, interpolation=cv2.INTER_NEAREST)
    points, descriptors = _local_features(grey, mask)
    return TemplateFeatures(vector=_colour_layout(rgb), points=points, descriptors=descriptors)


def _work_rgb(image: Image.Image) -> np.ndarray:
    """RGB with its long side at most WORK_MARGIN × WORK_SIDE: detail enough after trimming, never a huge array."""
    image = image.convert("RGB")
    scale = WORK_MARGIN * WORK_SIDE / max(image.size)
    if scale < 1.0:  # reducing_gap: a fast integer reduce first, then a precise resize
        size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
        image = image.resize(size, Image.Resampling.BILINEAR, reducing_gap=2.0)
    return np.array(image, dtype=np.uint8)


def _caption_mask(shape: tuple[int, int], boxes: list[Box]) -> tuple[np.ndarray, list[tuple[int, int, int, int]]]:
    """255 where features may be taken, 0 on the (slightly grown) caption boxes; and those boxes in pixels."""
    height, width = shape
    mask = np.full(shape, 255, np.uint8)
    grow = BOX_MARGIN * min(width, height)
    pixels = []
    for left, top, right, bottom in boxes:
        x0, x1 = int(max(0, left * width - grow)), int(min(width, right * width + grow + 1))
        y0, y1 = int(max(0, top * height - grow)), int(min(height, bottom * height + grow + 1))
        if x1 > x0 and y1 > y0:
            mask[y0:y1, x0:x1] = 0
            pixels.append((x0, y0, x1, y1))
    return mask, pixels


def _fill_masked(rgb: np.ndarray, mask: np.ndarray, boxes: list[tuple[int, int, int, int]]) -> np.ndarray:
    """Each masked box painted with the median colour of the pixels just around it.

    Flat paint leaves nothing for ORB to find there, and a caption banner whose text
    is painted with the banner's own white becomes a uniform frame that gets trimmed.
    """
    height, width = mask.shape
    for x0, y0, x1, y1 in boxes:
        ring = (slice(max(0, y0 - RING_PX), min(height, y1 + RING_PX)), slice(max(0, x0 - RING_PX), min(width, x1 + RING_PX)))
        around = rgb[ring][mask[ring] > 0]
        if len(around):
            rgb[y0:y1, x0:x1] = np.median(around, axis=0).astype(np.uint8)
    return rgb


def _picture_bounds(grey: np.ndarray) -> tuple[int, int, int, int]:
    """Rows and columns left after trimming uniform frames (borders, emptied banners) from each side.

    A row or column is uniform when at most 5 % of its pixels stray more than
    FRAME_TOLERANCE from its median. Judged on a small copy (a frame is never
    thinner than that matters). Besides the uniform lines at an edge, a side also
    loses a thin strip of leftovers before a uniform band: the cut-off caption line at
    the top of a cropped banner, which OCR does not read, must not keep the banner in.
    """
    step = max(1, min(grey.shape) // 128)
    small = grey[::step, ::step]

    def trim(lines: np.ndarray) -> int:
        count = len(lines)
        deviation = np.abs(lines.astype(np.int16) - np.median(lines, axis=1, keepdims=True).astype(np.int16))
        uniform = (deviation > FRAME_TOLERANCE).mean(axis=1) <= 0.05
        busy = np.flatnonzero(~uniform)
        start = int(busy[0]) if len(busy) else count
        # A run of uniform lines that begins within LEFTOVER of the edge and ends within BAND.
        band_end, run = start, 0
        for index in range(start, int(count * BAND)):
            run = run + 1 if uniform[index] else 0
            if run >= max(2, int(count * MIN_BAND)) and index - run + 1 <= start + int(count * LEFTOVER):
                band_end = index + 1
        return min(max(start, band_end), count * 3 // 4)

    # Repeat: a coloured border around a banner makes the banner's rows non-uniform
    # until the border's columns are gone.
    top, bottom, left, right = 0, small.shape[0], 0, small.shape[1]
    for _ in range(3):
        before = (top, bottom, left, right)
        view = small[top:bottom, left:right]
        top += trim(view)
        bottom -= trim(small[top:bottom, left:right][::-1])
        left += trim(small[top:bottom, left:right].T)
        right -= trim(small[top:bottom, left:right].T[::-1])
        if (top, bottom, left, right) == before:
            break
    return (top * step, min(grey.shape[0], bottom * step), left * step, min(grey.shape[1], right * step))


def _colour_layout(rgb: np.ndarray) -> np.ndarray:
    """The picture as an 8×8 grid of average colours, each channel mean-centred, unit length.

    Measured on the synthetic template set (bench/bench_templates.py): this finds a
    variant's template among the 10 nearest for 99.5 % of pairs, against 85 % for a
    16×16 grey grid: colour survives crops, re-compression and caption paint better.
    """
    # INTER_AREA averages whole cells: smoothing enough, no blur needed.
    small = cv2.resize(rgb, (VECTOR_SIDE, VECTOR_SIDE), interpolation=cv2.INTER_AREA)
    vector = small.astype(np.float32).reshape(-1, 3)
    vector = (vector - vector.mean(axis=0)).ravel()
    norm = float(np.linalg.norm(vector))
    return vector / norm if norm > 1e-6 else np.zeros(VECTOR_DIM, np.float32)


_per_thread = threading.local()


@contextmanager
def single_threaded_opencv() -> Iterator[None]:
    """OpenCV with one thread while template work runs: on images this small its thread
    pool costs more CPU than it saves (a 500 × 500 descriptor match: 1.6 ms CPU on one
    thread, 2.1 ms on two); parallelism comes from running several memes at once."""
    previous = cv2.getNumThreads()
    cv2.setNumThreads(1)
    try:
        yield
    finally:
        cv2.setNumThreads(previous)


def _local_features(grey: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    orb = getattr(_per_thread, "orb", None)
    if orb is None:  # one detector per thread: cv2 objects are not safe to share
        orb = _per_thread.orb = cv2.ORB_create(nfeatures=MAX_FEATURES, fastThreshold=FAST_THRESHOLD,
                                              nlevels=PYRAMID_LEVELS)
    keypoints, descriptors = orb.detectAndCompute(grey, mask)
    if descriptors is None or not keypoints:
        return np.zeros((0, 2), np.float32), np.zeros((0, 32), np.uint8)
    # Strongest first: verification's quick first look uses only the head of the list.
    order = np.argsort([-kp.response for kp in keypoints], kind="stable")
    points = np.array([kp.pt for kp in keypoints], np.float32)[order]
    return points, descriptors[order]
