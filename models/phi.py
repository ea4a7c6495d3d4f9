"""The candidate transforms phi: R+ -> R that SSIMBaD schedules noise levels with, each with its exact inverse.

SSIMBaD uses one monotone phi for the noise conditioning c_noise = phi(sigma), the training density
(uniform in phi) and the sampler grid (evenly spaced in phi). The paper's choice is phi*(sigma) = sigma / (sigma + 0.3).
``optimal_phi.py`` ranks every entry of :data:`CANDIDATES`; add a transform by adding one entry.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

import torch

Fn = Callable[[torch.Tensor], torch.Tensor]


@dataclass(frozen=True)
class Phi:
    """A strictly monotone transform of sigma > 0 and its inverse (both elementwise on tensors)."""

    name: str
    forward: Fn
    inverse: Fn

    def __call__(self, sigma: torch.Tensor) -> torch.Tensor:
        return self.forward(sigma)

    def __repr__(self) -> str:
        return f"Phi({self.name!r})"


def rational(c: float) -> Phi:
    """phi(sigma) = sigma / (sigma + c), phi^-1(y) = c y / (1 - y): the SSIMBaD family (c = 0.3 in the paper)."""
    return Phi(f"sigma/(sigma+{c:g})", lambda s: s / (s + c), lambda y: c * y / (1 - y))


def power_rational(p: float) -> Phi:
    """phi(sigma) = sigma^p / (sigma^p + 1), phi^-1(y) = (y / (1 - y))^(1/p)."""
    return Phi(f"sigma^{p:g}/(sigma^{p:g}+1)", lambda s: s**p / (s**p + 1), lambda y: (y / (1 - y)) ** (1 / p))


_BASE = [
    Phi("sigma", lambda s: s, lambda y: y),
    Phi("log(sigma)", torch.log, torch.exp),
    Phi("log1p(sigma)", torch.log1p, torch.expm1),
    Phi("sigma^2", lambda s: s**2, torch.sqrt),
    Phi("1/sigma", torch.reciprocal, torch.reciprocal),
    Phi("1/sigma^2", lambda s: s**-2, torch.rsqrt),
    Phi("arcsinh(sigma)", torch.asinh, torch.sinh),
    Phi("tanh(sigma)", torch.tanh, torch.atanh),
    Phi("sigmoid(sigma)", torch.sigmoid, torch.logit),
    Phi("atan(sigma)", torch.atan, torch.tan),
    Phi("erf(sigma/5)", lambda s: torch.erf(s / 5), lambda y: 5 * torch.erfinv(y)),
    Phi("log(sigma^2+1)", lambda s: torch.log1p(s**2), lambda y: torch.sqrt(torch.expm1(y))),
    power_rational(1.5),
]
RATIONAL_CS = [round(0.1 * k, 1) for k in range(1, 11)]

#: Every candidate of the phi* search, by printable name.
CANDIDATES: dict[str, Phi] = {p.name: p for p in _BASE + [rational(c) for c in RATIONAL_CS]}

_FLOAT = r"([0-9]*\.?[0-9]+(?:e-?[0-9]+)?)"


def get_phi(name: str) -> Phi:
    """Look a transform up by name; ``sigma/(sigma+C)`` and ``sigma^P/(sigma^P+1)`` accept any positive C, P."""
    key = name.replace(" ", "")
    if key in CANDIDATES:
        return CANDIDATES[key]
    if m := re.fullmatch(rf"sigma/\(sigma\+{_FLOAT}\)", key):
        return rational(float(m.group(1)))
    if (m := re.fullmatch(rf"sigma\^{_FLOAT}/\(sigma\^{_FLOAT}\+1\)", key)) and m.group(1) == m.group(2):
        return power_rational(float(m.group(1)))
    raise ValueError(f"unknown phi {name!r}; choose one of {', '.join(CANDIDATES)} or sigma/(sigma+C)")


def phi_grid(phi: Phi, steps: int, sigma_min: float, sigma_max: float) -> torch.Tensor:
    """``steps`` sigmas evenly spaced in phi-space from sigma_max down to sigma_min (float64, no trailing zero).

    The endpoints are set exactly: transforms that saturate in float64 (tanh, sigmoid, erf) would otherwise invert
    phi(sigma_max) = 1.0 to infinity.
    """
    if steps < 2:
        raise ValueError(f"a grid needs at least 2 points, got {steps}")
    lo, hi = phi(torch.tensor(sigma_min, dtype=torch.float64)), phi(torch.tensor(sigma_max, dtype=torch.float64))
    ys = hi + torch.arange(steps, dtype=torch.float64) / (steps - 1) * (lo - hi)
    sigmas = phi.inverse(ys)
    sigmas[0], sigmas[-1] = sigma_max, sigma_min
    if not bool(torch.isfinite(sigmas).all()):
        raise ValueError(f"{phi.name} cannot resolve the range [{sigma_min}, {sigma_max}] in float64")
    return sigmas


