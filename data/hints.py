"""Colour hints: a few points of the target's colours given to the model as an extra condition.

Training hints are simulated as in user-guided colorization (Zhang et al. 2017, "Real-Time User-Guided Image
Colorization with Learned Deep Priors", Sec. 3.2): the number of points is geometric (p = 1/8, here capped at
``points``), each point is a square patch of random side whose colour is the target's mean over the patch, at a
uniformly drawn position. With probability ``drop`` an image gets no hints at all, so that hint-free use stays
the model's default. The hint image has 4 channels: RGB in [-1, 1] inside the patches (0 elsewhere) and the 0/1
mask; "no hints" is all zeros. A user's hints are an RGBA image whose opaque pixels are the hints
(``colorize.py --hints``, :func:`apps.colorize_inputs.prepare_hints`).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

#: Zhang et al.'s geometric parameter of the number of points (mean 8).
POINTS_P = 1 / 8
#: The largest patch side as a fraction of the image side (Zhang et al.: 9 px at 256 px).
PATCH_FRACTION = 9 / 256


@dataclass(frozen=True)
class HintSampler:
    points: int = 0      # the most points per image; 0: the data carries no hints
    drop: float = 0.5    # probability that an image gets none
    patch: float = PATCH_FRACTION  # the largest patch side, as a fraction of the image side

    def __post_init__(self) -> None:
        if self.points < 0:
            raise ValueError(f"hint_points must be >= 0 (0: no hints), got {self.points}")
        if not 0.0 <= self.drop <= 1.0:
            raise ValueError(f"hint_drop must be a probability in [0, 1], got {self.drop}")
        if not 0.0 < self.patch <= 1.0:
            raise ValueError(f"hint_patch must be a fraction of the image side in (0, 1], got {self.patch}")

    def sample(self, target: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """Hints [4, H, W] drawn from ``target`` (uint8 H x W x 3)."""
        h, w = target.shape[:2]
        hints = torch.zeros(4, h, w)
        if rng.random() < self.drop:
            return hints
        largest = max(1, round(self.patch * max(h, w)))
        for _ in range(min(self.points, int(rng.geometric(POINTS_P)))):
            side = int(rng.integers(1, largest + 1))
            add_patch(hints, target, int(rng.integers(0, h - side + 1)), int(rng.integers(0, w - side + 1)), side)
        return hints


def add_patch(hints: torch.Tensor, source: np.ndarray, y: int, x: int, side: int) -> None:
    """Mark the ``side`` x ``side`` patch at (y, x) of ``hints`` [4, H, W] with the mean colour of ``source``
    (uint8 H x W x 3) over it."""
    colour = source[y:y + side, x:x + side].reshape(-1, 3).mean(axis=0) / 127.5 - 1
    hints[:3, y:y + side, x:x + side] = torch.as_tensor(colour, dtype=torch.float32)[:, None, None]
    hints[3, y:y + side, x:x + side] = 1.0
