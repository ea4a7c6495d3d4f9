"""Samplers of the probability-flow ODE dx/dsigma = (x - D(x; sigma)) / sigma (Karras et al. 2022, eq. 3 with
sigma(t) = t, s(t) = 1), as pure functions sharing one signature:

    sampler(denoiser, x, sigmas, cond, **options) -> x_0

``denoiser(x, sigma, cond)`` is any D (a :class:`~models.denoiser.Denoiser`, a guided wrapper, or an analytic one),
``x`` starts at sigmas[0] * noise, ``sigmas`` is a schedule's grid (decreasing, last entry 0).

Options common to all: ``callback(i, x, denoised, sigma)`` sees every step (trajectories, progress bars) and
``guide(denoised) -> loss`` adds gradient guidance after each step, x <- x - grad_x loss(D(x)) (SSIM guidance, see
:mod:`models.ssim_guidance`; the guidance scale lives inside ``guide``).
"""
from __future__ import annotations

import math
from typing import Callable, Literal

import torch
from torch.utils.checkpoint import checkpoint

Callback = Callable[[int, torch.Tensor, torch.Tensor, torch.Tensor], None] | None
Guide = Callable[[torch.Tensor], torch.Tensor] | None


def _denoise(denoiser, x, sigma, cond, guide: Guide):
    """D(x; sigma) and, with a guide, the gradient of guide(D(x; sigma)) with respect to x."""
    if guide is None:
        return denoiser(x, sigma, cond), None
    with torch.enable_grad():
        x_in = x.detach().requires_grad_(True)
        denoised = denoiser(x_in, sigma, cond)
        (grad,) = torch.autograd.grad(guide(denoised), x_in)
    return denoised.detach(), grad


@torch.no_grad()
def sample_euler(denoiser, x, sigmas, cond, *, callback: Callback = None, guide: Guide = None) -> torch.Tensor:
    """First-order Euler steps on the grid; N steps cost N network evaluations."""
    for i in range(len(sigmas) - 1):
        denoised, grad = _denoise(denoiser, x, sigmas[i], cond, guide)
        if callback is not None:
            callback(i, x, denoised, sigmas[i])
        x = x + (sigmas[i + 1] - sigmas[i]) * (x - denoised) / sigmas[i]
        if grad is not None:
            x = x - grad
    return x


@torch.no_grad()
def sample_heun(
    denoiser, x, sigmas, cond, *, callback: Callback = None, guide: Guide = None, s_churn: float = 0.0,
    s_tmin: float = 0.0, s_tmax: float = math.inf, s_noise: float = 1.0, generator: torch.Generator | None = None,
) -> torch.Tensor:
    """EDM Algorithm 2: Heun's second-order method with optional stochastic churn. N steps cost 2N - 1 evaluations
    (the last step, to sigma = 0, is a plain Euler step). With s_churn = 0 it is deterministic."""
    n = len(sigmas) - 1
    for i in range(n):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        gamma = min(s_churn / n, math.sqrt(2) - 1) if s_tmin <= float(sigma) <= s_tmax else 0.0
        sigma_hat = sigma * (1 + gamma)
        if gamma > 0:  # lines 5-6: add noise to move from sigma up to sigma_hat
            eps = torch.randn(x.shape, generator=generator, device="cpu").to(x) * s_noise
            x = x + (sigma_hat**2 - sigma**2).sqrt() * eps
        denoised, grad = _denoise(denoiser, x, sigma_hat, cond, guide)
        if callback is not None:
            callback(i, x, denoised, sigma_hat)
        d = (x - denoised) / sigma_hat
        x_next = x + (sigma_next - sigma_hat) * d
        if sigma_next > 0:  # lines 9-11: second-order correction
            d_next = (x_next - denoiser(x_next, sigma_next, cond)) / sigma_next
            x_next = x + (sigma_next - sigma_hat) * (d + d_next) / 2
        x = x_next - grad if grad is not None else x_next
    return x


@torch.no_grad()
def sample_dpmpp_2m(denoiser, x, sigmas, cond, *, callback: Callback = None, guide: Guide = None) -> torch.Tensor:
    """DPM-Solver++(2M) (Lu et al. 2022, "DPM-Solver++", Algorithm 2): the multistep second-order solver of the
    data-prediction ODE in t = -ln(sigma). Step i with h = t_{i+1} - t_i:

        x_{i+1} = (sigma_{i+1} / sigma_i) x_i - (e^{-h} - 1) D_i',   D_i' = (1 + 1/(2r)) D_i - 1/(2r) D_{i-1},

    r = h_{i-1} / h. The first step is first order (D_i' = D_i, i.e. DDIM) and the last one, to sigma = 0, returns
    the denoised image. N steps cost N network evaluations, like Euler."""
    old_denoised, h_last = None, None
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised, grad = _denoise(denoiser, x, sigma, cond, guide)
        if callback is not None:
            callback(i, x, denoised, sigma)
        if sigma_next == 0:
            x = denoised
        else:
            h = torch.log(sigma / sigma_next)
            d = denoised
            if old_denoised is not None:
                r = h_last / h
                d = (1 + 1 / (2 * r)) * denoised - (1 / (2 * r)) * old_denoised
            x = (sigma_next / sigma) * x - torch.expm1(-h) * d
            h_last = h
        old_denoised = denoised
        if grad is not None:
            x = x - grad
    return x


@torch.no_grad()
def sample_euler_ancestral(
    denoiser, x, sigmas, cond, *, callback: Callback = None, guide: Guide = None, eta: float = 1.0,
    s_noise: float = 1.0, generator: torch.Generator | None = None,
) -> torch.Tensor:
    """Ancestral sampling: each step from sigma to sigma' draws from DDPM's posterior q(x_sigma' | x_sigma, y) (Ho
    et al. 2020, eq. 7, in EDM's variance-exploding coordinates) with the clean image y replaced by D(x; sigma):

        x' = D + (sigma_down / sigma) (x - D) + sigma_up z,   sigma_up = eta sigma' sqrt(1 - sigma'^2 / sigma^2),
        sigma_down = sqrt(sigma'^2 - sigma_up^2),

    so eta = 1 is the posterior (sigma_down = sigma'^2 / sigma) and eta = 0 the Euler step of the ODE. The fresh noise
    z washes out the errors of the earlier steps instead of carrying them to the end, as the ODE does (Karras et
    al. 2022, Sec. 4); the noise comes from ``generator`` (CPU), so a seed fixes the sample. N steps cost N network
    evaluations; the last step, to sigma = 0, returns the denoised image."""
    if not 0.0 <= eta <= 1.0:
        raise ValueError(f"eta must be in [0, 1], got {eta}")
    for i in range(len(sigmas) - 1):
        sigma, sigma_next = sigmas[i], sigmas[i + 1]
        denoised, grad = _denoise(denoiser, x, sigma, cond, guide)
        if callback is not None:
            callback(i, x, denoised, sigma)
        sigma_up = (eta * sigma_next * (1 - sigma_next**2 / sigma**2).clamp(min=0).sqrt()).clamp(max=sigma_next)
        sigma_down = (sigma_next**2 - sigma_up**2).clamp(min=0).sqrt()
        x = denoised + (sigma_down / sigma) * (x - denoised)
        if sigma_next > 0 and eta > 0:
            z = torch.randn(x.shape, generator=generator, device="cpu").to(x)
            x = x + sigma_up * s_noise * z
        if grad is not None:
            x = x - grad
    return x


def sample_euler_diff(
    denoiser, x, sigmas, cond, *, callback: Callback = None, guide: Guide = None, checkpointing: bool = True,
    grad_last_k: int | None = None,
) -> torch.Tensor:
    """Euler steps with gradients flowing through the whole trajectory (trajectory refinement).

    ``checkpointing`` recomputes each step's activations in the backward pass instead of storing them, so memory
    holds one step's activations plus the K step inputs. ``grad_last_k`` backpropagates through the last k steps
    only (the earlier ones run without a graph). ``guide`` is not supported here (it needs its own graph).
    """
    if guide is not None:
        raise ValueError("sample_euler_diff does not take a guide; guidance is a sampling-time option")
    n = len(sigmas) - 1
    first_grad = 0 if grad_last_k is None else max(0, n - grad_last_k)

    def step(x_i: torch.Tensor, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        denoised = denoiser(x_i, sigmas[i], cond)
        return x_i + (sigmas[i + 1] - sigmas[i]) * (x_i - denoised) / sigmas[i], denoised

    for i in range(n):
        if i < first_grad:
            with torch.no_grad():
                x, denoised = step(x, i)
        elif checkpointing and torch.is_grad_enabled():
            x, denoised = checkpoint(step, x, i, use_reentrant=False)
        else:
            x, denoised = step(x, i)
        if callback is not None:
            callback(i, x, denoised, sigmas[i])
    return x


@torch.no_grad()
def sample_cold(denoiser, x, sigmas, cond, *, callback: Callback = None, guide: Guide = None) -> torch.Tensor:
    """Cold Diffusion's Algorithm 2 (Bansal et al. 2022) for the linear blend x_t = (1 - t) y + t g of
    :mod:`models.cold`: x_s = x_t + (t - s) (D(x_t; t) - g), with g = x at sigmas[0] = 1 (where sampling starts).
    N steps cost N network evaluations."""
    if float(sigmas[0]) != 1.0:
        raise ValueError(f"the cold sampler starts at t = 1 (the tinted sketch), got a grid from {float(sigmas[0])}")
    endpoint = x
    for i in range(len(sigmas) - 1):
        denoised, grad = _denoise(denoiser, x, sigmas[i], cond, guide)
        if callback is not None:
            callback(i, x, denoised, sigmas[i])
        x = x + (sigmas[i] - sigmas[i + 1]) * (denoised - endpoint)
        if grad is not None:
            x = x - grad
    return x


SAMPLERS = {"euler": sample_euler, "euler_ancestral": sample_euler_ancestral, "cold": sample_cold, "heun": sample_heun,
            "dpmpp_2m": sample_dpmpp_2m, "euler_diff": sample_euler_diff}
#: A sampler's name, as configs and command lines give it (``--model.sampler``): one of :data:`SAMPLERS`.
SamplerName = Literal[tuple(SAMPLERS)]
#: Samplers that draw noise along the way: :func:`models.sampling.sample` hands them its seeded generator.
STOCHASTIC = ("euler_ancestral", "heun")


def get_sampler(name: str):
    if name not in SAMPLERS:
        raise ValueError(f"unknown sampler {name!r}; choose one of {', '.join(SAMPLERS)}")
    return SAMPLERS[name]
