"""What template grouping stores per meme (no OpenCV needed to read or write it)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

#: Side of the global vector's colour grid (VECTOR_SIDE² cells × 3 channels).
VECTOR_SIDE = 8
VECTOR_DIM = VECTOR_SIDE * VECTOR_SIDE * 3
#: Bump when what is extracted changes: stored features of another version are recomputed.
FEATURES_VERSION = 1


@dataclass(frozen=True)
class TemplateFeatures:
    vector: np.ndarray  # float32 [VECTOR_DIM], unit length (all zeros for a blank picture)
    points: np.ndarray  # float32 [n, 2], pixel coordinates on the WORK_SIDE picture
    descriptors: np.ndarray  # uint8 [n, 32]

    def to_bytes(self) -> tuple[bytes, bytes, bytes]:
        return (self.vector.astype(np.float16).tobytes(), self.points.astype(np.float16).tobytes(),
                self.descriptors.tobytes())

    @classmethod
    def from_bytes(cls, vector: bytes, points: bytes, descriptors: bytes) -> TemplateFeatures:
        return cls(
            vector=np.frombuffer(vector, np.float16).astype(np.float32),
            points=np.frombuffer(points, np.float16).astype(np.float32).reshape(-1, 2),
            descriptors=np.frombuffer(descriptors, np.uint8).reshape(-1, 32),
        )
