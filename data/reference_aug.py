"""Training references that do not line up with the target, so that a model must find correspondences (used with
the U-Net's reference correspondence, ``configs/variants/refattn.yaml``).

After the TPS warp, the reference is mirrored left-right with probability ``flip`` and cut into a ``patches`` x
``patches`` grid whose tiles are put back in a random order. Both keep every colour of the image and destroy its
pixel alignment with the target. Nothing is drawn while both are off, so the training stream of other configs is
unchanged; the evaluation protocol never uses them.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ReferenceAugment:
    flip: float = 0.0
    patches: int = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.flip <= 1.0:
            raise ValueError(f"reference_flip must be a probability in [0, 1], got {self.flip}")
        if self.patches < 0 or self.patches == 1:
            raise ValueError(f"reference_patches must be 0 (off) or at least 2 tiles per side, got {self.patches}")

    def apply(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.flip and rng.random() < self.flip:
            img = img[:, ::-1]
        if self.patches:
            img = shuffle_patches(img, self.patches, rng)
        return np.ascontiguousarray(img)


def shuffle_patches(img: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """The image's k x k tiles in a random order (edges of sides not divisible by k stay in place)."""
    h, w = img.shape[0] // k, img.shape[1] // k
    tiles = [img[i * h:(i + 1) * h, j * w:(j + 1) * w] for i in range(k) for j in range(k)]
    out = img.copy()
    for n, src in enumerate(rng.permutation(k * k)):
        i, j = divmod(n, k)
        out[i * h:(i + 1) * h, j * w:(j + 1) * w] = tiles[src]
    return out
