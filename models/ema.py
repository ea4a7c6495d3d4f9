"""Exponential moving average of the network weights, with the usual warm-up of the decay.

decay_t = min(decay, (1 + t) / (10 + t)) so that early averages are not dominated by the random initialisation.
"""
from __future__ import annotations

import torch
from torch import nn


@torch.no_grad()
def ema_update(ema: nn.Module, model: nn.Module, decay: float, step: int) -> float:
    """ema <- d * ema + (1 - d) * model for parameters; buffers are copied. Returns the decay used."""
    d = min(decay, (1 + step) / (10 + step))
    for e, p in zip(ema.parameters(), model.parameters()):
        e.lerp_(p.detach().to(e.dtype), 1 - d)
    for e, b in zip(ema.buffers(), model.buffers()):
        e.copy_(b)
    return d
