"""Sampling a colorization: seeded noise at sigma_max, the schedule's grid, optional classifier-free guidance
(:class:`~models.guidance.GuidedDenoiser`) and gradient guidance, then one of :mod:`models.solvers`; the
controls of :mod:`models.controls` (realism, noise start) change the sketch, the start and the grid.
"""
from __future__ import annotations

import torch
from torch import nn

from utils.errors import OptionError

from .controls import lowpass_sketch, start_grid
from .denoiser import Cond
from .guidance import GuidedDenoiser
from .schedules import NoiseSchedule, sampler_grid
from .solvers import STOCHASTIC, get_sampler


def check_pairing(schedule: NoiseSchedule, sampler: str, grid: str = "phi") -> None:
    """The cold sampler (Cold Diffusion's Algorithm 2) goes with the cold schedule (models.cold), and only with it;
    EDM's grid places noise levels, which the cold schedule has none of (its t is a blend weight)."""
    if (sampler == "cold") != schedule.deterministic:
        raise OptionError("sampler", f"{sampler!r} with {schedule}: the cold sampler and the cold schedule go together")
    if grid == "edm" and schedule.deterministic:
        raise OptionError("grid", f"'edm' spaces noise levels, and {schedule} has no noise; sample it on its own "
                          "grid (grid 'phi')")


def sample(
    denoiser: nn.Module, schedule: NoiseSchedule, cond: Cond, steps: int, sampler: str, *, seed: int | None = None,
    device: torch.device | str = "cpu", guidance: tuple[float, float] = (1.0, 1.0), guide=None, callback=None,
    realism: float = 0.0, init: torch.Tensor | None = None, sigma_start: float | None = None, grid: str = "phi",
    rho: float = 7.0, **sampler_options,
) -> torch.Tensor:
    """x_0 from the schedule's prior (x_T = sigma_max n; the tinted sketch for the cold baseline) on the
    ``steps``-point grid of ``schedule`` (``grid`` "phi": its own; "edm": EDM's eq. 5 with ``rho`` over its sigma
    range, :func:`models.schedules.sampler_grid`). The noise comes from a CPU generator seeded with ``seed``
    (reproducible on any device), ``guidance`` = (s_sketch, s_reference) wraps the denoiser in 2-D classifier-free
    guidance unless both are 1, ``guide`` adds gradient guidance (SSIM guidance) after each
    step. ``realism`` > 0 low-passes the sketch; ``init`` (images in [-1, 1] like the output) with ``sigma_start``
    below sigma_max starts from init + sigma_start n on the grid truncated there (the same noise n). A stochastic
    sampler (ancestral, Heun with churn) draws its further noise from the same seeded generator."""
    if guide is not None and torch.is_inference_mode_enabled():
        # Gradient guidance differentiates through the denoiser: leave inference mode (Lightning tests in it).
        with torch.inference_mode(False):
            cond = Cond(*(None if t is None else t.clone() for t in cond))
            return sample(denoiser, schedule, cond, steps, sampler, seed=seed,
                          device=device, guidance=guidance, guide=guide, callback=callback, realism=realism,
                          init=init, sigma_start=sigma_start, grid=grid, rho=rho, **sampler_options)
    if tuple(guidance) != (1.0, 1.0):
        denoiser = GuidedDenoiser(denoiser, *guidance)
    if realism:
        cond = cond._replace(sketch=lowpass_sketch(cond.sketch, realism))
    check_pairing(schedule, sampler, grid)
    full = sampler_grid(schedule, steps, grid, rho, device=device)
    sigmas = start_grid(full, sigma_start)
    b, _, h, w = cond.sketch.shape
    gen = torch.Generator().manual_seed(seed) if seed is not None else None
    noise = torch.randn((b, 3, h, w), generator=gen).to(device)
    if sigma_start is not None and init is None:
        raise ValueError("sigma_start needs an initial image (init)")
    if sigmas is not full:  # a noise start (PASD's ANS)
        if schedule.deterministic:
            raise ValueError("a noise start (sigma_start) needs a noise schedule; the cold baseline starts from its "
                             "tinted sketch")
        x = init.to(device=device, dtype=noise.dtype).expand_as(noise) + sigmas[0] * noise
    else:
        x = schedule.prior(noise, sigmas[0], cond)
    if sampler in STOCHASTIC and gen is not None:
        sampler_options.setdefault("generator", gen)  # the same seed fixes the noise drawn along the way
    return get_sampler(sampler)(denoiser, x, sigmas, cond, guide=guide, callback=callback, **sampler_options)
