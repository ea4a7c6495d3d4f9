"""Noise schedules: one object holds c_noise(sigma), the training density over sigma and the sampler grid.

All schedules work in EDM's variance-exploding coordinates x = y + sigma n (Karras et al. 2022, Table 1), so the
samplers and the denoiser need not know which one is active:

- :class:`PhiSchedule` - SSIMBaD: one monotone phi shared by c_noise, the training density and the grid;
- :class:`EDMSchedule` - EDM: log-normal training density, rho = 7 grid, c_noise = ln(sigma) / 4;
- :class:`VPSchedule` - DDPM as in AnimeDiffusion: linear beta over T discrete steps, written as EDM's VP case.
"""
from __future__ import annotations

from typing import Literal

import torch

from utils.errors import OptionError

from .phi import Phi, get_phi, phi_grid


#: The sampler grids a model can sample on: "phi" is the schedule's own grid (for :class:`PhiSchedule` evenly
#: spaced in phi), "edm" EDM's eq. 5 over the schedule's sigma range (:func:`sampler_grid`).
GRIDS = ("phi", "edm")
Grid = Literal[GRIDS]


def _append_zero(sigmas: torch.Tensor) -> torch.Tensor:
    return torch.cat([sigmas, sigmas.new_zeros(1)])


def edm_sigmas(steps: int, sigma_min: float, sigma_max: float, rho: float = 7.0) -> torch.Tensor:
    """EDM's time steps (Karras et al. 2022, eq. 5), float64, sigma_max first:
    sigma_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho, i = 0..N-1."""
    if steps < 2:
        raise ValueError(f"a grid needs at least 2 points, got {steps}")
    if not rho > 0:
        raise ValueError(f"rho must be positive, got {rho}")
    i = torch.arange(steps, dtype=torch.float64) / (steps - 1)
    a, b = sigma_max ** (1 / rho), sigma_min ** (1 / rho)
    return (a + i * (b - a)) ** rho


class NoiseSchedule:
    """Interface. ``grid(n)`` returns n + 1 strictly decreasing sigmas: n points, then sigma_n = 0."""

    sigma_min: float
    sigma_max: float
    init_args: dict  # the constructor's arguments, saved in checkpoints
    deterministic = False  # True for a degradation without noise (models.cold)

    def corrupt(self, y: torch.Tensor, sigma: torch.Tensor, noise: torch.Tensor, cond) -> torch.Tensor:
        """The training input at noise level ``sigma`` (shaped to broadcast): y + sigma n."""
        return y + sigma * noise

    def prior(self, noise: torch.Tensor, sigma_max: torch.Tensor, cond) -> torch.Tensor:
        """The sampler's starting point at the grid's first level: sigma_max n."""
        return noise * sigma_max

    def c_noise(self, sigma: torch.Tensor) -> torch.Tensor:
        """The noise-level input of the network."""
        raise NotImplementedError

    def sample_sigma(self, n: int, device: torch.device | str = "cpu", generator: torch.Generator | None = None):
        """n noise levels drawn from the training density."""
        raise NotImplementedError

    def grid(self, steps: int, device: torch.device | str = "cpu") -> torch.Tensor:
        """The sampler's noise levels (float32), sigma_max first, 0 last."""
        raise NotImplementedError

    def _uniform(self, n: int, generator: torch.Generator | None) -> torch.Tensor:
        return torch.rand(n, generator=generator, dtype=torch.float64)


class PhiSchedule(NoiseSchedule):
    """SSIMBaD's schedule: one transform phi gives c_noise, the training density and the grid.

    With u ~ U(0, 1), sigma = phi^-1(phi(sigma_min) + u (phi(sigma_max) - phi(sigma_min))), c_noise = phi(sigma), and
    the grid is evenly spaced in phi from phi(sigma_max) to phi(sigma_min). Default phi*(sigma) = sigma / (sigma + 0.3).

    Args:
        phi: the transform, by name (:data:`models.phi.CANDIDATES`, or sigma/(sigma+C) for any C > 0).
        sigma_min: the lowest noise level (of training and of the grid).
        sigma_max: the highest noise level, where sampling starts.
    """

    def __init__(self, phi: str = "sigma/(sigma+0.3)", sigma_min: float = 0.002, sigma_max: float = 80.0):
        if not 0 < sigma_min < sigma_max:
            raise OptionError("sigma_min", f"must be > 0 and below sigma_max ({sigma_max}), got {sigma_min}")
        try:
            self.phi: Phi = get_phi(phi) if isinstance(phi, str) else phi
        except ValueError as err:
            raise OptionError("phi", str(err)) from None
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.init_args = dict(phi=self.phi.name, sigma_min=self.sigma_min, sigma_max=self.sigma_max)
        # Reject transforms whose range collapses in float64 (tanh etc. saturate) here, not mid-training.
        phi_grid(self.phi, 2, self.sigma_min, self.sigma_max)

    def c_noise(self, sigma: torch.Tensor) -> torch.Tensor:
        return self.phi(sigma.double()).to(sigma.dtype)

    def sample_sigma(self, n, device="cpu", generator=None):
        s_lo, s_hi = torch.tensor([self.sigma_min, self.sigma_max], dtype=torch.float64)
        lo, hi = self.phi(s_lo), self.phi(s_hi)
        sigma = self.phi.inverse(lo + self._uniform(n, generator) * (hi - lo))
        return sigma.clamp(self.sigma_min, self.sigma_max).float().to(device)

    def grid(self, steps, device="cpu"):
        return _append_zero(phi_grid(self.phi, steps, self.sigma_min, self.sigma_max)).float().to(device)

    def __repr__(self) -> str:
        return f"PhiSchedule({self.phi.name}, sigma in [{self.sigma_min}, {self.sigma_max}])"


class EDMSchedule(NoiseSchedule):
    """EDM's schedule (Karras et al. 2022): a log-normal training density and the rho grid.

    ln(sigma) ~ N(P_mean, P_std^2) for training (Table 1), c_noise = ln(sigma) / 4, and the grid
    sigma_i = (sigma_max^(1/rho) + i/(N-1) (sigma_min^(1/rho) - sigma_max^(1/rho)))^rho (eq. 5).

    Args:
        p_mean: P_mean, the mean of ln(sigma) in training.
        p_std: P_std, the standard deviation of ln(sigma) in training.
        rho: the grid's rho (larger spends more steps at low noise).
        sigma_min: the grid's lowest noise level.
        sigma_max: the grid's highest noise level, where sampling starts.
    """

    def __init__(self, p_mean: float = -1.2, p_std: float = 1.2, rho: float = 7.0, sigma_min: float = 0.002,
                 sigma_max: float = 80.0):
        if not 0 < sigma_min < sigma_max:
            raise OptionError("sigma_min", f"must be > 0 and below sigma_max ({sigma_max}), got {sigma_min}")
        self.p_mean, self.p_std, self.rho = p_mean, p_std, rho
        self.sigma_min, self.sigma_max = float(sigma_min), float(sigma_max)
        self.init_args = dict(p_mean=p_mean, p_std=p_std, rho=rho, sigma_min=self.sigma_min, sigma_max=self.sigma_max)

    def c_noise(self, sigma):
        return sigma.log() / 4

    def sample_sigma(self, n, device="cpu", generator=None):
        z = torch.randn(n, generator=generator, dtype=torch.float64)
        return (self.p_mean + self.p_std * z).exp().float().to(device)

    def grid(self, steps, device="cpu"):
        return _append_zero(edm_sigmas(steps, self.sigma_min, self.sigma_max, self.rho)).float().to(device)

    def __repr__(self) -> str:
        return f"EDMSchedule(P_mean={self.p_mean}, P_std={self.p_std}, rho={self.rho})"


class VPSchedule(NoiseSchedule):
    """DDPM's schedule (Ho et al. 2020) as AnimeDiffusion sets it, in EDM's VP coordinates.

    A linear beta_t from beta_start to beta_end over T steps; sigma_t = sqrt(1 / alpha_bar_t - 1) with
    alpha_bar_t = prod_{s<=t} (1 - beta_s).

    Training draws t uniformly from {0..T-1}; the grid takes ``steps`` timesteps evenly spaced from T-1 to 0
    (DDIM-style striding); c_noise is the (fractional) timestep scaled to [0, 1], the discrete analogue of EDM's
    VP c_noise = (M - 1) t. Pair it with ``Denoiser(prediction="eps")`` for epsilon prediction.

    Args:
        beta_start: beta of the first timestep.
        beta_end: beta of the last timestep.
        timesteps: T, the number of discrete timesteps.
    """

    def __init__(self, beta_start: float = 1e-6, beta_end: float = 1e-2, timesteps: int = 1000):
        self.init_args = dict(beta_start=beta_start, beta_end=beta_end, timesteps=timesteps)
        betas = torch.linspace(beta_start, beta_end, timesteps, dtype=torch.float64)
        alpha_bar = torch.cumprod(1 - betas, 0)
        self.sigmas = ((1 / alpha_bar) - 1).sqrt()  # increasing in t
        self.timesteps = timesteps
        self.sigma_min, self.sigma_max = float(self.sigmas[0]), float(self.sigmas[-1])

    def timestep(self, sigma: torch.Tensor) -> torch.Tensor:
        """Fractional t with sigma_t = sigma, by linear interpolation of ln sigma_t (which increases with t)."""
        log_table = self.sigmas.log().to(sigma.device)
        log_s = sigma.double().clamp(self.sigma_min, self.sigma_max).log()
        idx = torch.searchsorted(log_table, log_s.reshape(-1)).clamp(1, self.timesteps - 1).reshape(log_s.shape)
        lo, hi = log_table[idx - 1], log_table[idx]
        return (idx - 1) + (log_s - lo) / (hi - lo)

    def c_noise(self, sigma):
        return (self.timestep(sigma) / (self.timesteps - 1)).to(sigma.dtype)

    def sample_sigma(self, n, device="cpu", generator=None):
        t = torch.randint(0, self.timesteps, (n,), generator=generator)
        return self.sigmas[t].float().to(device)

    def grid(self, steps, device="cpu"):
        if not 2 <= steps <= self.timesteps:
            raise ValueError(f"a DDPM grid needs 2..{self.timesteps} points, got {steps}")
        t = torch.linspace(self.timesteps - 1, 0, steps, dtype=torch.float64).round().long()
        return _append_zero(self.sigmas[t]).float().to(device)

    def __repr__(self) -> str:
        return f"VPSchedule(T={self.timesteps}, sigma in [{self.sigma_min:.4g}, {self.sigma_max:.4g}])"


def sampler_grid(schedule: NoiseSchedule, steps: int, grid: str = "phi", rho: float = 7.0,
                 device: torch.device | str = "cpu") -> torch.Tensor:
    """The ``steps``-point sampler grid (then 0) of ``schedule``: its own (``grid`` "phi"), or EDM's eq. 5 with this
    ``rho`` between the schedule's sigma_min and sigma_max ("edm"; for a DDPM schedule the network then sees
    fractional timesteps, as in EDM's sampling of its VP models). The cold schedule's t is a blend weight, not a
    noise level: :func:`models.sampling.check_pairing` refuses "edm" for it."""
    if grid == "phi":
        return schedule.grid(steps, device=device)
    if grid == "edm":
        return _append_zero(edm_sigmas(steps, schedule.sigma_min, schedule.sigma_max, rho)).float().to(device)
    raise ValueError(f"grid must be one of {', '.join(GRIDS)}, got {grid!r}")
