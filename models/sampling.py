"""Sampling a colorization: seeded noise at sigma_max, the schedule's grid, optional classifier-free guidance
(:class:`~models.guidance.GuidedDenoiser`) and gradient guidance, then one of :mod:`models.samplers`.
"""
from __future__ import annotations

import torch
from torch import nn

from .denoiser import Cond
from .guidance import GuidedDenoiser
from .samplers import get_sampler
from .schedules import NoiseSchedule


def sample(
    denoiser: nn.Module, schedule: NoiseSchedule, cond: Cond, steps: int, sampler: str, *, seed: int | None = None,
    device: torch.device | str = "cpu", guidance: tuple[float, float] = (1.0, 1.0), guide=None, callback=None,
    **sampler_options,
) -> torch.Tensor:
    """x_0 from x_T = sigma_max n on the ``steps``-point grid of ``schedule``. The noise comes from a CPU generator
    seeded with ``seed`` (reproducible on any device), ``guidance`` = (s_sketch, s_reference) wraps the denoiser in
    2-D classifier-free guidance unless both are 1, ``guide`` adds gradient guidance (SSIM guidance) after each
    step."""
    if guide is not None and torch.is_inference_mode_enabled():
        # Gradient guidance differentiates through the denoiser: leave inference mode (Lightning tests in it).
        with torch.inference_mode(False):
            return sample(denoiser, schedule, Cond(*(t.clone() for t in cond)), steps, sampler, seed=seed,
                          device=device, guidance=guidance, guide=guide, callback=callback, **sampler_options)
    if tuple(guidance) != (1.0, 1.0):
        denoiser = GuidedDenoiser(denoiser, *guidance)
    sigmas = schedule.grid(steps, device=device)
    b, _, h, w = cond.reference.shape
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    x = torch.randn((b, 3, h, w), generator=gen).to(device) * sigmas[0]
    return get_sampler(sampler)(denoiser, x, sigmas, cond, guide=guide, callback=callback, **sampler_options)
