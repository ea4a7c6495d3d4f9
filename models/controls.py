"""Sampling controls of the background papers, as functions of the sampler's inputs.

- Realism (DiSS, Cheng et al. 2023, Sec. 3.3): the sketch condition is low-passed, down to N x N and back up, so
  that the model follows the lines less closely and its prior more. DiSS maps a realism weight s in [0, 1] to N
  linearly between m/8 + k and 1 + k for an m x m condition; here s = 0 must leave the sketch untouched (today's
  output, bit for bit), so N falls geometrically from m at s = 0 to m/8 at s = 1 (DiSS's mildest filter):
  N = round(m / 8^s).
- Adjustable noise start (PASD, Yang et al. 2023, Sec. 3.3, eq. 3-4): instead of pure noise at sigma_max the
  sampler starts from an initial image (the reference, a flat fill, an earlier result) noised to sigma_start, on the
  same grid truncated at sigma_start. In EDM's coordinates x = y + sigma n, PASD's
  z = sqrt(a) z_init + sqrt(1 - a) n is x = z / sqrt(a) with sigma_start = sqrt((1 - a) / a). The grid points
  above sigma_start are skipped: that many network evaluations fewer.
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


def start_grid(sigmas: torch.Tensor, sigma_start: float | None) -> torch.Tensor:
    """The grid a noise start at ``sigma_start`` samples on: sigma_start, then the grid's points below it (the
    last, 0, kept). None, or a sigma_start at or above the grid's sigma_max, is plain sampling: the grid itself (at
    sigma_max the image would be 1/80 of the noise, and pure noise is what the model was trained to start from)."""
    if sigma_start is None or sigma_start >= float(sigmas[0]):
        return sigmas
    if sigma_start <= 0:
        raise ValueError(f"sigma_start must be positive, got {sigma_start}")
    rest = sigmas[sigmas < sigma_start]
    return torch.cat([rest.new_tensor([sigma_start]), rest])
