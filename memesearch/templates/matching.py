"""Do two memes share their base picture? Local features with geometric verification.

Descriptor matches alone do not separate a shared picture from a shared font: the
same letters match whatever picture they are on. Real shared pictures also agree on
*where* things are: their matches fit one similarity transform (scale + shift, the
changes memes go through: resize, crop, borders). ``cv2.estimateAffinePartial2D``
fits exactly that with RANSAC; a full homography would also accept the perspective
warps chance matches can produce, so the narrower model is the safer one here.
"""

from __future__ import annotations

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


def _ratio_matches(query: np.ndarray, train: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(query rows, their train rows) that pass the ratio test. ``batchDistance`` returns the two
    nearest as arrays: the same matches as ``BFMatcher.knnMatch`` without a Python object each."""
    distance, nearest = cv2.batchDistance(query, train, cv2.CV_32S, normType=cv2.NORM_HAMMING, K=2)
    rows = np.flatnonzero(distance[:, 0] < RATIO * distance[:, 1])
    return rows, nearest[rows, 0]


def verify(a: TemplateFeatures, b: TemplateFeatures) -> Verdict:
    """How many matches between ``a`` and ``b`` fit one plausible similarity transform."""
    if len(a.descriptors) < MIN_INLIERS or len(b.descriptors) < MIN_INLIERS:
        return Verdict(0, False)
    # A quick first look with a's strongest keypoints (stored first): most candidates share
    # nothing, and this rejects them at a quarter of the cost of matching everything.
    head_rows, head_targets = _ratio_matches(a.descriptors[:QUICK_LOOK], b.descriptors)
    if len(a.descriptors) > QUICK_LOOK and len(head_rows) < QUICK_MIN:
        return Verdict(0, False)
    rest_rows, rest_targets = _ratio_matches(a.descriptors[QUICK_LOOK:], b.descriptors) \
        if len(a.descriptors) > QUICK_LOOK else (np.zeros(0, np.int64), np.zeros(0, np.int32))
    rows = np.concatenate([head_rows, rest_rows + QUICK_LOOK])  # the head's matches are not redone
    targets = np.concatenate([head_targets, rest_targets])
    if len(rows) < MIN_INLIERS:
        return Verdict(len(rows) // 2, False)
    source, target = a.points[rows], b.points[targets]
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
