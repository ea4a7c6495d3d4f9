"""Two-dimensional classifier-free guidance over sketch and reference (DiSS, Cheng et al. 2023).

Training drops the sketch and the reference independently (replaced by a constant, see :func:`drop_conditions`).
At sampling the guided denoiser combines three evaluations with independent scales, nested so that
s_sketch = s_reference = 1 is exactly the plain conditional denoiser:

    D = D(0, 0) + s_sketch (D(S, 0) - D(0, 0)) + s_reference (D(S, R) - D(S, 0)).

(DiSS writes the last term as D(0, R) - D(0, 0); that sum equals D(S, R) at unit scales only when the two
conditions act additively, so the nested form, as in InstructPix2Pix, is used.)
"""
from __future__ import annotations

import torch
from torch import nn

from .denoiser import Cond

#: The value a dropped condition is replaced with: mid-grey in [-1, 1].
NULL_VALUE = 0.0


def null_like(t: torch.Tensor) -> torch.Tensor:
    return torch.full_like(t, NULL_VALUE)


def drop_conditions(cond: Cond, p_sketch: float, p_reference: float, generator: torch.Generator | None = None,
                    uniform: torch.Tensor | None = None) -> Cond:
    """Replace each sample's sketch / reference by the null image with probabilities p_sketch / p_reference,
    independently (training side of classifier-free guidance). ``uniform`` (2, B) gives the U(0, 1) draws of the
    two decisions per sample; otherwise they are drawn from ``generator``."""
    b = cond.sketch.shape[0]
    draw = uniform if uniform is not None else torch.rand(2, b, generator=generator, device="cpu")
    draw = draw.to(cond.sketch.device)
    keep_s = (draw[0] >= p_sketch).view(b, 1, 1, 1)
    keep_r = (draw[1] >= p_reference).view(b, *[1] * (cond.reference.dim() - 1))  # all of an item's references
    return cond._replace(sketch=torch.where(keep_s, cond.sketch, NULL_VALUE),
                         reference=torch.where(keep_r, cond.reference, NULL_VALUE))  # hints: dropped by the data


class GuidedDenoiser(nn.Module):
    """Wraps a denoiser ``D(x, sigma, cond)``; same call signature, so every sampler accepts it."""

    def __init__(self, denoiser: nn.Module, scale_sketch: float = 1.0, scale_reference: float = 1.0):
        super().__init__()
        self.denoiser, self.scale_sketch, self.scale_reference = denoiser, scale_sketch, scale_reference

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, cond: Cond) -> torch.Tensor:
        s_s, s_r = self.scale_sketch, self.scale_reference
        if s_s == 1.0 and s_r == 1.0:
            return self.denoiser(x, sigma, cond)
        n = x.shape[0]
        # One batched call for the three conditionings; colour hints, if any, stay in all three (not guided).
        ref = cond.reference
        batch = Cond(torch.cat([cond.sketch, cond.sketch, null_like(cond.sketch)]),
                     torch.cat([ref, null_like(ref), null_like(ref)]),
                     None if cond.hints is None else cond.hints.repeat(3, 1, 1, 1),
                     None if cond.ref_mask is None else torch.cat([cond.ref_mask] * 3))
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device).reshape(-1).expand(n).repeat(3)
        d_full, d_sketch, d_none = self.denoiser(x.repeat(3, 1, 1, 1), sigma, batch).split(n)
        return d_none + s_s * (d_sketch - d_none) + s_r * (d_full - d_sketch)
