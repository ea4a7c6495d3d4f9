"""XDoG line extraction: the sketch S = XDoG(I_gt) that the model is conditioned on.

Extended difference of Gaussians (Winnemöller, Kyprianidis & Olsen 2012, "XDoG: An eXtended difference-of-Gaussians
compendium", eqs. 5 and 7), computed on the luminance u in [0, 1] (ITU-R 601 luma):

    S_p(u)  = (1 + p) G_sigma(u) - p G_{k sigma}(u)                 (sharpened image, eq. 5)
    T(S)    = 1                               if S >= epsilon
              1 + tanh(r (S - epsilon))       otherwise              (soft threshold, eq. 7)

The paper calls the ramp steepness r "phi" (not the noise transform phi of the schedule); with its value 1e9 the
ramp is a hard step: pixels whose sharpened luminance falls below epsilon become black lines, the rest stays white.

The fixed threshold epsilon assumes a full-range luminance: on pale or low-contrast art (light hair on a light
background, soft shading) the sharpened image hardly crosses it and the sketch keeps little more than the eyes. The
default ``contrast="stretch"`` therefore maps the image's 1st..99th luminance percentiles to [STRETCH_FLOOR, 1]
first (a per-image affine stretch; a full-range image barely changes, and the floor keeps dark regions above the
threshold so that a stretched dark area does not turn into speckle); ``contrast="none"`` is the paper's XDoG.

:func:`xdog` is the NumPy/OpenCV version used to make training data (uint8 out); :func:`xdog_torch` is the same
operator on [-1, 1] tensor batches with a finite, differentiable ramp, used by SSIM-guided sampling to compare the
sketch of a prediction with the input sketch. Both use the same truncated Gaussian kernels and replicated borders,
so with a huge ``ramp`` they agree.

:class:`XDoGParams` holds the configurable parameters and draws the per-sample blur sigma from ``sigmas``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import cv2
import numpy as np
import torch
import torch.nn.functional as F

#: ITU-R BT.601 luma weights for R, G, B (the luminance XDoG works on).
LUMA = (0.299, 0.587, 0.114)
#: Default ramp steepness of :func:`xdog_torch`: finite so gradients flow, steep enough that lines stay near black
#: (on the shared real faces at sigma 0.5 the soft sketch differs from the hard one by 0.02 on average in [-1, 1]).
SOFT_RAMP = 20.0
#: The default parameters (the paper's): blur sigmas drawn per sample, ratio k of the two blurs, sharpening p,
#: threshold epsilon, ramp steepness (hard step).
SIGMAS, K, P, EPSILON, RAMP = (0.3, 0.4, 0.5), 3.5, 10.0, 0.01, 1e9
#: Luminance normalisation before XDoG: "stretch" (the default: 1st..99th percentile to [0, 1]) or "none" (paper).
CONTRAST_MODES = ("none", "stretch")
Contrast = Literal[CONTRAST_MODES]
CONTRAST = "stretch"
STRETCH_PERCENTILES = (1.0, 99.0)
STRETCH_FLOOR = 0.1
#: A luminance range below this (an almost uniform image) is left as it is rather than stretched.
MIN_RANGE = 1 / 255


@dataclass(frozen=True)
class XDoGParams:
    """XDoG parameters; the blur sigma of each sample is drawn uniformly from ``sigmas``."""

    sigmas: tuple[float, ...] = SIGMAS
    k: float = K
    p: float = P
    epsilon: float = EPSILON
    ramp: float = RAMP
    contrast: str = CONTRAST

    def __post_init__(self) -> None:
        if self.contrast not in CONTRAST_MODES:
            raise ValueError(f"XDoG contrast must be one of {', '.join(CONTRAST_MODES)}, got {self.contrast!r}")
        if not self.sigmas or min(self.sigmas) <= 0:
            raise ValueError(f"XDoG sigmas must be a non-empty list of positive numbers, got {self.sigmas}")
        if self.k <= 0 or self.ramp <= 0:
            raise ValueError(f"XDoG k and ramp must be positive, got k={self.k}, ramp={self.ramp}")

    def sample_sigma(self, rng: np.random.Generator) -> float:
        return float(self.sigmas[rng.integers(len(self.sigmas))])

    def apply(self, rgb: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The sketch of ``rgb`` with a blur sigma drawn from ``rng``."""
        return self.extract(rgb, self.sample_sigma(rng))

    def extract(self, rgb: np.ndarray, sigma: float) -> np.ndarray:
        """The sketch of ``rgb`` with blur ``sigma`` and these parameters."""
        return xdog(rgb, sigma, self.k, self.p, self.epsilon, self.ramp, self.contrast)


def gaussian_kernel(sigma: float) -> np.ndarray:
    """Normalised 1-D Gaussian taps over [-ceil(3 sigma), ceil(3 sigma)] (float32)."""
    radius = max(1, math.ceil(3.0 * sigma))
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    g = np.exp(-0.5 * (x / sigma) ** 2)
    return (g / g.sum()).astype(np.float32)


def luminance(rgb: np.ndarray) -> np.ndarray:
    """uint8 RGB (H, W, 3) or gray (H, W) -> float32 luma in [0, 1]."""
    if rgb.ndim == 2:
        return rgb.astype(np.float32) / 255.0
    r, g, b = (rgb[..., i].astype(np.float32) for i in range(3))
    return (LUMA[0] * r + LUMA[1] * g + LUMA[2] * b) / 255.0


def stretch(u: np.ndarray) -> np.ndarray:
    """Luminance with its 1st..99th percentiles mapped to [STRETCH_FLOOR, 1] (clipped); near-uniform images
    unchanged."""
    lo, hi = np.percentile(u, STRETCH_PERCENTILES)
    if hi - lo < MIN_RANGE:
        return u
    return np.clip(STRETCH_FLOOR + (u - lo) * ((1 - STRETCH_FLOOR) / (hi - lo)), 0.0, 1.0).astype(np.float32)


def _blur(u: np.ndarray, sigma: float) -> np.ndarray:
    g = gaussian_kernel(sigma)
    return cv2.sepFilter2D(u, cv2.CV_32F, g, g, borderType=cv2.BORDER_REPLICATE)


def xdog(
    rgb: np.ndarray, sigma: float = 0.5, k: float = K, p: float = P, epsilon: float = EPSILON, ramp: float = RAMP,
    contrast: str = CONTRAST,
) -> np.ndarray:
    """Sketch of a uint8 RGB (H, W, 3) or gray (H, W) image: uint8 (H, W), dark lines on white (eqs. 5 and 7)."""
    u = luminance(rgb)
    if contrast == "stretch":
        u = stretch(u)
    sharpened = (1.0 + p) * _blur(u, sigma) - p * _blur(u, k * sigma)
    # 1 + tanh(r * min(S - epsilon, 0)) is eq. 7 in one expression (the branch S >= epsilon gives tanh(0) = 0).
    tone = 1.0 + np.tanh(np.float32(ramp) * np.minimum(sharpened - np.float32(epsilon), np.float32(0.0)))
    return np.clip(tone * 255.0 + 0.5, 0, 255).astype(np.uint8)


def _blur_torch(u: torch.Tensor, sigma: float) -> torch.Tensor:
    g = torch.from_numpy(gaussian_kernel(sigma)).to(u)
    r = g.numel() // 2
    u = F.pad(u, (r, r, r, r), mode="replicate")
    u = F.conv2d(u, g.view(1, 1, 1, -1))
    return F.conv2d(u, g.view(1, 1, -1, 1))


def xdog_torch(
    x: torch.Tensor,
    sigma: float = 0.5,
    k: float = K,
    p: float = P,
    epsilon: float = EPSILON,
    ramp: float = SOFT_RAMP,
    contrast: str = CONTRAST,
) -> torch.Tensor:
    """Differentiable XDoG of a [-1, 1] batch (B, 3, H, W) or (B, 1, H, W): a [-1, 1] sketch (B, 1, H, W).

    Same operator as :func:`xdog` (eqs. 5 and 7) with a finite ``ramp``; gradients flow through the blurs and
    the tanh wherever the sharpened luminance is below ``epsilon``.
    """
    if x.ndim != 4 or x.shape[1] not in (1, 3):
        raise ValueError(f"xdog_torch expects (B, 3, H, W) or (B, 1, H, W), got {tuple(x.shape)}")
    u = (x + 1.0) * 0.5
    if u.shape[1] == 3:
        w = torch.tensor(LUMA, dtype=u.dtype, device=u.device).view(1, 3, 1, 1)
        u = (u * w).sum(dim=1, keepdim=True)
    if contrast == "stretch":  # as stretch(), per image (quantiles are differentiable almost everywhere)
        q = torch.tensor(STRETCH_PERCENTILES, dtype=u.dtype, device=u.device) / 100
        lo, hi = torch.quantile(u.flatten(1), q, dim=1).view(2, -1, 1, 1, 1)
        wide = (hi - lo) >= MIN_RANGE
        scaled = STRETCH_FLOOR + (u - lo) * ((1 - STRETCH_FLOOR) / (hi - lo).clamp(min=MIN_RANGE))
        u = torch.where(wide, scaled.clamp(0, 1), u)
    sharpened = (1.0 + p) * _blur_torch(u, sigma) - p * _blur_torch(u, k * sigma)
    tone = 1.0 + torch.tanh(ramp * torch.clamp(sharpened - epsilon, max=0.0))
    return tone * 2.0 - 1.0
