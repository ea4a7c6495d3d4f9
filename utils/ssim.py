"""SSIM in torch, batched and differentiable, equal to scikit-image's default ``structural_similarity``.

scikit-image (``structural_similarity(a, b, channel_axis=2, data_range=R)`` with its defaults) computes, per channel,
local means, variances and the covariance over a 7x7 uniform window, with the sample-covariance factor
NP / (NP - 1), NP = 49; the SSIM map of Wang et al. 2004 (eq. 13) with C1 = (K1 R)^2, C2 = (K2 R)^2; and the mean of
the map after cropping (win - 1) // 2 pixels from every border, then the mean over channels. The crop discards exactly
the pixels whose window reaches past the border, so a "valid" box filter (no padding) gives the same numbers without
the reflection padding skimage filters with.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def box_mean(x: torch.Tensor, window: int) -> torch.Tensor:
    """Mean over every ``window`` x ``window`` patch of [B, C, H, W] (valid positions only), as two 1-D passes."""
    return F.avg_pool2d(F.avg_pool2d(x, (window, 1), stride=1), (1, window), stride=1)


def ssim_box(x: torch.Tensor, y: torch.Tensor, data_range: float = 1.0, window: int = 7, reduction: str = "mean",
         k1: float = 0.01, k2: float = 0.03) -> torch.Tensor:
    """Structural similarity of [B, C, H, W] images with values in a range of width ``data_range``.

    ``x`` and ``y`` broadcast over the batch dimension: a [1, C, H, W] reference against B images computes the
    reference's statistics once. Returns the mean over the batch (``reduction="mean"``) or one value per image
    (``"none"``, shape [B]). Differentiable in both arguments; computed in the inputs' dtype.
    """
    if x.ndim != 4 or y.ndim != 4:
        raise ValueError(f"ssim expects [B, C, H, W] tensors, got shapes {tuple(x.shape)} and {tuple(y.shape)}")
    if window < 2 or window % 2 == 0:
        raise ValueError(f"the SSIM window must be odd and at least 3, got {window}")
    if min(x.shape[-2:]) < window or min(y.shape[-2:]) < window:
        raise ValueError(f"images of {tuple(x.shape[-2:])} px are smaller than the {window}x{window} SSIM window")
    if reduction not in ("mean", "none"):
        raise ValueError(f"reduction must be 'mean' or 'none', got {reduction!r}")

    cov_norm = window**2 / (window**2 - 1)  # sample covariance, as skimage's use_sample_covariance=True
    c1, c2 = (k1 * data_range) ** 2, (k2 * data_range) ** 2
    mu_x, mu_y = box_mean(x, window), box_mean(y, window)
    var_x = cov_norm * (box_mean(x * x, window) - mu_x * mu_x)
    var_y = cov_norm * (box_mean(y * y, window) - mu_y * mu_y)
    cov_xy = cov_norm * (box_mean(x * y, window) - mu_x * mu_y)
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * cov_xy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    per_image = ssim_map.mean(dim=(1, 2, 3), dtype=torch.float64).to(ssim_map.dtype)  # as skimage, sum in float64
    return per_image.mean() if reduction == "mean" else per_image
