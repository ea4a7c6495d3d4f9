"""The preconditioned denoiser D(x; sigma, cond) of EDM (Karras et al. 2022, eq. 7 and Table 1).

    D(x; sigma) = c_skip(sigma) x + c_out(sigma) F(concat[c_in(sigma) x, S, R], c_noise(sigma))

with the network F conditioned on the sketch S (1 channel), optional colour hints H (4 channels, for a network with
11 input channels) and the reference R (3 channels); c_noise comes from the active noise schedule (phi(sigma) for
SSIMBaD). ``prediction="eps"`` gives EDM's VP preconditioning
(c_skip = 1, c_out = -sigma, c_in = 1 / sqrt(sigma^2 + 1)): F predicts the noise, as DDPM does.
``prediction="x0"`` drops the skip path (c_skip = 0, c_out = sigma_data, EDM's c_in): F predicts the clean image
itself, so the input noise reaches the output only through what the network fails to remove. With EDM's
c_skip the network must instead reproduce and cancel the noise term c_skip x exactly, which a short run does not
learn at mid sigma (the flat-region speckle; docs/experiments/speckle-and-samplers.md).
"""
from __future__ import annotations

from typing import Literal, NamedTuple

import torch
from torch import nn

from utils.errors import OptionError

from .schedules import NoiseSchedule


#: The network's input channels without and with colour hints: noisy image 3 + sketch 1 (+ hints 4) + reference 3.
IN_CHANNELS, HINT_CHANNELS = 7, 4
#: What F predicts: EDM's preconditioned x0 ("edm"), the noise ("eps", VP / DDPM) or the clean image ("x0").
PREDICTIONS = ("edm", "eps", "x0")
Prediction = Literal[PREDICTIONS]


class Cond(NamedTuple):
    """The conditioning images, in [-1, 1]: sketch [B, 1, H, W] and reference [B, 3, H, W]; optional colour hints
    [B, 4, H, W] (RGB where the mask is 1 and 0 elsewhere, then the 0/1 mask; :mod:`data.hints`). A model with hint
    channels reads None as "no hints" (all zeros), the state it was trained with when hints were dropped.

    Several references per sketch (a character sheet): ``reference`` [B, K, 3, H, W] and ``ref_mask`` [B, K], True
    where item b has a k-th reference (the rest is padding; None: every item has K), or [B, K, H, W], True at the
    pixels that are part of a reference (a reference's transparent background is not; padding is all False).
    Reference k = 0 is the one the input channels take; a correspondence warp (``ref_warp``) matches the sketch
    against all of them, over their shown pixels only."""

    sketch: torch.Tensor
    reference: torch.Tensor
    hints: torch.Tensor | None = None
    ref_mask: torch.Tensor | None = None


def split_references(cond: Cond) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """(the reference of the input channels [B, 3, H, W], all references [B, K, 3, H, W], their mask); the last
    two are None when every item has exactly one reference, shown whole, so that K = 1 is the single-reference
    path."""
    ref, mask = cond.reference, cond.ref_mask
    if ref.dim() == 4:
        return ref, None, None
    if ref.dim() != 5 or ref.shape[2] != 3:
        raise ValueError(f"references must be [B, 3, H, W] or [B, K, 3, H, W], got {tuple(ref.shape)}")
    if mask is not None and mask.shape not in (ref.shape[:2], ref.shape[:2] + ref.shape[3:]):
        raise ValueError(f"ref_mask must be [B, K] or [B, K, H, W] of references {tuple(ref.shape)}, "
                         f"got {tuple(mask.shape)}")
    present = None if mask is None else mask if mask.dim() == 2 else mask.flatten(2).any(-1)  # [B, K]
    if present is not None and not bool(present[:, 0].all()):
        raise ValueError("every item needs its first reference, with at least one pixel shown (ref_mask[:, 0])")
    # (each bool() is a host read: the whole-first check runs only when there is one reference in fact)
    alone = ref.shape[1] == 1 or (present is not None and not bool(present[:, 1:].any()))
    if alone and (mask is None or mask.dim() == 2 or bool(mask[:, 0].all())):
        return ref[:, 0], None, None
    return ref[:, 0], ref, mask


class Denoiser(nn.Module):
    def __init__(self, net: nn.Module, schedule: NoiseSchedule, sigma_data: float = 0.5, prediction: str = "edm"):
        super().__init__()
        if prediction not in PREDICTIONS:
            raise OptionError("prediction", f"must be one of {', '.join(map(repr, PREDICTIONS))}, got {prediction!r}")
        self.net, self.schedule, self.sigma_data, self.prediction = net, schedule, sigma_data, prediction
        in_channels = getattr(net, "init_args", {}).get("in_channels", IN_CHANNELS)
        self.takes_hints = in_channels == IN_CHANNELS + HINT_CHANNELS

    def scalings(self, sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(c_skip, c_out, c_in) for a tensor of noise levels (Table 1 of EDM)."""
        if self.prediction == "eps":
            return torch.ones_like(sigma), -sigma, 1 / (sigma**2 + 1).sqrt()
        sd2 = self.sigma_data**2
        if self.prediction == "x0":  # F's target y / sigma_data has unit variance; lambda = 1 / c_out^2 is constant
            return torch.zeros_like(sigma), torch.full_like(sigma, self.sigma_data), 1 / (sigma**2 + sd2).sqrt()
        return sd2 / (sigma**2 + sd2), sigma * self.sigma_data / (sigma**2 + sd2).sqrt(), 1 / (sigma**2 + sd2).sqrt()

    def loss_weight(self, sigma: torch.Tensor) -> torch.Tensor:
        """EDM's lambda(sigma) = 1 / c_out^2, which makes the effective training target of F unit-variance (eq. 8)."""
        return 1 / self.scalings(sigma)[1] ** 2

    def forward(self, x: torch.Tensor, sigma: torch.Tensor | float, cond: Cond) -> torch.Tensor:
        sigma = torch.as_tensor(sigma, dtype=torch.float32, device=x.device)
        sigma = sigma.reshape(-1, 1, 1, 1).expand(x.shape[0], 1, 1, 1)
        c_skip, c_out, c_in = self.scalings(sigma)
        first, references, ref_mask = split_references(cond)
        parts = [c_in * x, cond.sketch.to(x.dtype)]
        if self.takes_hints:  # between the sketch and the reference, which stays last (correspondence.REF_CHANNELS)
            hints = cond.hints if cond.hints is not None else x.new_zeros(x.shape[0], HINT_CHANNELS, *x.shape[2:])
            parts.append(hints.to(x.dtype))
        elif cond.hints is not None:
            raise ValueError("this model was trained without colour hints (its network has no hint channels)")
        inp = torch.cat(parts + [first.to(x.dtype)], dim=1)
        c_noise = self.schedule.c_noise(sigma.reshape(-1))
        if references is None:
            f = self.net(inp, c_noise)
        elif not getattr(self.net, "takes_several_references", False):
            raise ValueError("this model takes one reference per sketch (its network has no correspondence warp); "
                             "several need a model trained with configs/variants/multiref.yaml")
        else:
            f = self.net(inp, c_noise, references=references.to(x.dtype), ref_mask=ref_mask)
        return c_skip * x + c_out * f.to(x.dtype)
