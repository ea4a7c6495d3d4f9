"""Exponential moving average of the network weights, with the usual warm-up of the decay.

decay_t = min(decay, (1 + t) / (10 + t)) so that early averages are not dominated by the random initialisation.
"""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float, step: int, skip: torch.Tensor | None = None) -> float:
    """ema <- d * ema + (1 - d) * model for parameters; buffers are copied. Returns the decay used. ``skip``, a 0-d
    bool tensor, leaves the EMA as it is where it is true, decided on the device (no host sync)."""
    d = min(decay, (1 + step) / (10 + step))
    averaged = list(ema.parameters())
    weight = 1 - d if skip is None else (~skip).to(averaged[0].dtype) * (1 - d)
    # one multi-tensor lerp over all parameters (a few kernel launches instead of one per tensor)
    torch._foreach_lerp_(averaged, [p.detach().to(e.dtype) for e, p in zip(averaged, model.parameters())], weight)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)
    return d
