"""The low-pass of a sketch behind DiSS's realism control (Cheng et al. 2023, Sec. 3.3): down to N x N and back up.

Shared by sampling (:mod:`models.controls`) and by training sketches (``data.sketch_lowpass``), so that both see
the same filter. N falls geometrically from the image side m at realism s = 0 to m/8 at s = 1: N = round(m / 8^s).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

#: The coarsest low-pass size at realism 1, as a fraction of the image side (DiSS's m / 8).
REALISM_MIN_FRACTION = 1 / 8


def realism_size(side: int, realism: float) -> int:
    """N = round(side / 8^realism), at least 1: the side of the low-pass at realism weight ``realism``."""
    if not 0.0 <= realism <= 1.0:
        raise ValueError(f"realism must be in [0, 1], got {realism}")
    return max(1, round(side * REALISM_MIN_FRACTION**realism))


def lowpass_sketch(sketch: torch.Tensor, realism: float) -> torch.Tensor:
    """The sketch [B, 1, H, W] area-downsampled to N x N (N from :func:`realism_size` of the longer side, the
    shorter side in proportion) and bilinearly upsampled back; realism 0 returns ``sketch`` itself."""
    h, w = sketch.shape[-2:]
    n = realism_size(max(h, w), realism)
    if n >= max(h, w):
        return sketch
    small = F.interpolate(sketch, size=(max(1, round(h * n / max(h, w))), max(1, round(w * n / max(h, w)))),
                          mode="area")
    return F.interpolate(small, size=(h, w), mode="bilinear", align_corners=False)
