"""The cold-diffusion colorization baseline (Bansal et al. 2022, "Cold Diffusion"; in pixel space, as the latent
colorization model of the background documents does it in a VAE's latent space).

The degradation is deterministic: the colour image y is blended linearly into a grey, sketch-tinted image g,

    x_t = D(y, t) = (1 - t) y + t g,    t in [0, 1],    g = the sketch times the reference's mean colour,

so g is known at sampling (it depends on the conditions only) and x_1 = g is where sampling starts. The network
learns the inversion R(x_t, t) ~ y with the same loss, network and conditioning as the diffusion models (the
Denoiser with ``prediction="x0"``, t in place of sigma). Sampling is Algorithm 2 of Cold Diffusion,

    x_s = x_t - D(R(x_t, t), t) + D(R(x_t, t), s) = x_t + (t - s) (R(x_t, t) - g),

which, unlike re-degrading the estimate (their Algorithm 1), keeps errors of R from accumulating. In the schedule
interface t plays sigma's part: :class:`ColdSchedule` gives the training density (uniform t), the grid (t evenly
spaced from 1 to 0) and c_noise = t, and replaces the noising x = y + sigma n by the blend.
"""
from __future__ import annotations

import torch

from .schedules import NoiseSchedule


def cold_endpoint(sketch: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """g: the sketch [B, 1, H, W] multiplied, in [0, 1] units, by the reference's per-channel mean colour
    [B, 3, H, W] -> [B, 3, H, W] in [-1, 1] (white paper takes the reference's average colour, lines stay dark)."""
    mean = (reference.mean(dim=(2, 3), keepdim=True) + 1) / 2
    return (sketch + 1) / 2 * mean * 2 - 1


class ColdSchedule(NoiseSchedule):
    """t ~ U(0, 1) for training, ``grid(n)`` = n + 1 points evenly spaced from 1 to 0, c_noise = t; the
    corruption is the blend towards :func:`cold_endpoint` (no noise)."""

    sigma_min, sigma_max = 0.0, 1.0
    deterministic = True

    def __init__(self) -> None:
        self.init_args: dict = {}

    def c_noise(self, sigma):
        return sigma

    def sample_sigma(self, n, device="cpu", generator=None):
        return self._uniform(n, generator).float().to(device)

    def grid(self, steps, device="cpu"):
        if steps < 1:
            raise ValueError(f"a cold-diffusion grid needs at least 1 step, got {steps}")
        return torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64).float().to(device)

    def corrupt(self, y, sigma, noise, cond):
        t = torch.as_tensor(sigma, dtype=y.dtype, device=y.device).reshape(-1, 1, 1, 1)
        return (1 - t) * y + t * cold_endpoint(cond.sketch, cond.reference).to(y.dtype)

    def prior(self, noise, sigma_max, cond):
        return cold_endpoint(cond.sketch, cond.reference).to(device=noise.device, dtype=noise.dtype)

    def __repr__(self) -> str:
        return "ColdSchedule(linear blend to the tinted sketch)"
