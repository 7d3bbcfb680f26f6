"""Do two memes share their base picture? Local features with geometric verification.

Descriptor matches alone do not separate a shared picture from a shared font: the
same letters match whatever picture they are on. Real shared pictures also agree on
*where* things are: their matches fit one similarity transform (scale + shift, the
changes memes go through: resize, crop, borders). ``cv2.estimateAffinePartial2D``
fits exactly that with RANSAC; a full homography would also accept the perspective
warps chance matches can produce, so the narrower model is the safer one here.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import cv2
import numpy as np

from memesearch.templates.record import TemplateFeatures

#: Lowe's ratio test: the best match must be clearly better than the second best.
RATIO = 0.8
#: RANSAC reprojection threshold, in pixels of the WORK_SIDE picture.
REPROJECTION_PX = 6.0
#: A pair shares its picture with at least this many geometrically consistent matches...
MIN_INLIERS = 15
#: ...whose transform is a plausible resize: no rotation to speak of, scale within this range.
SCALE_RANGE = (0.4, 2.5)
MAX_ROTATION_DEG = 8.0
#: The quick first look: a's QUICK_LOOK strongest keypoints must find QUICK_MIN good matches.
QUICK_LOOK = 128
QUICK_MIN = 4


@dataclass(frozen=True)
class Verdict:
    inliers: int
    same: bool


_per_thread = threading.local()


def _good_matches(query: np.ndarray, train: np.ndarray) -> list:
    matcher = getattr(_per_thread, "matcher", None)
    if matcher is None:  # one matcher per thread: grouping verifies in threads, cv2 objects are not shared
        matcher = _per_thread.matcher = cv2.BFMatcher(cv2.NORM_HAMMING)
    pairs = matcher.knnMatch(query, train, k=2)
    return [m for m, *rest in (p for p in pairs if p) if not rest or m.distance < RATIO * rest[0].distance]


def verify(a: TemplateFeatures, b: TemplateFeatures) -> Verdict:
    """How many matches between ``a`` and ``b`` fit one plausible similarity transform."""
    if len(a.descriptors) < MIN_INLIERS or len(b.descriptors) < MIN_INLIERS:
        return Verdict(0, False)
    # A quick first look with a's strongest keypoints (stored first): most candidates share
    # nothing, and this rejects them at a quarter of the cost of matching everything.
    if len(a.descriptors) > QUICK_LOOK and len(_good_matches(a.descriptors[:QUICK_LOOK], b.descriptors)) < QUICK_MIN:
        return Verdict(0, False)
    good = _good_matches(a.descriptors, b.descriptors)
    if len(good) < MIN_INLIERS:
        return Verdict(len(good) // 2, False)
    source = a.points[[m.queryIdx for m in good]]
    target = b.points[[m.trainIdx for m in good]]
    transform, inlier_mask = cv2.estimateAffinePartial2D(
        source, target, method=cv2.RANSAC, ransacReprojThreshold=REPROJECTION_PX, maxIters=500, confidence=0.99
    )
    if transform is None or inlier_mask is None:
        return Verdict(0, False)
    inliers = int(inlier_mask.sum())
    scale = float(np.hypot(transform[0, 0], transform[1, 0]))
    rotation = abs(float(np.degrees(np.arctan2(transform[1, 0], transform[0, 0]))))
    plausible = SCALE_RANGE[0] <= scale <= SCALE_RANGE[1] and rotation <= MAX_ROTATION_DEG
    return Verdict(inliers, plausible and inliers >= MIN_INLIERS)
