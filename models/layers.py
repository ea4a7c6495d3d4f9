"""The U-Net's building blocks: GroupNorm with a group count for any width, the Fourier embedding of the noise level,
the residual block with adaptive scale and shift, and self-attention over pixels (Ho et al. 2020; Dhariwal & Nichol
2021; EDM's DDPM++ embedding)."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def group_norm(ch: int) -> nn.GroupNorm:
    """GroupNorm over ``ch`` channels: 32 groups where they divide it, else the largest count that does."""
    groups = 32 if ch % 32 == 0 else min(32, ch // 4)
    # widths such as 144 (a decoder concat at base 48): the largest count below that divides them
    return nn.GroupNorm(math.gcd(ch, groups), ch)


class FourierEmbedding(nn.Module):
    """Random Fourier features of the scalar c_noise, as EDM's DDPM++ uses them: [cos 2 pi f c, sin 2 pi f c],
    f ~ N(0, scale^2), fixed (a buffer, saved with the weights). Resolves c_noise ranges around [-2, 2]."""

    def __init__(self, channels: int, scale: float = 16.0, seed: int = 0):
        super().__init__()
        g = torch.Generator().manual_seed(seed)
        self.register_buffer("freqs", torch.randn(channels // 2, generator=g) * scale)

    def forward(self, c: torch.Tensor) -> torch.Tensor:
        arg = 2 * math.pi * c.float()[:, None] * self.freqs[None]
        return torch.cat([arg.cos(), arg.sin()], dim=1)


class ResBlock(nn.Module):
    def __init__(self, cin: int, cout: int, emb_ch: int, dropout: float):
        super().__init__()
        self.norm1, self.conv1 = group_norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_ch, 2 * cout)  # adaptive scale and shift of the second norm
        self.norm2, self.drop, self.conv2 = group_norm(cout), nn.Dropout(dropout), nn.Conv2d(cout, cout, 3, padding=1)
        nn.init.zeros_(self.conv2.weight)
        nn.init.zeros_(self.conv2.bias)
        self.skip = nn.Conv2d(cin, cout, 1) if cin != cout else nn.Identity()

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        scale, shift = self.emb(emb)[:, :, None, None].chunk(2, dim=1)
        h = self.norm2(h) * (1 + scale) + shift
        h = self.conv2(self.drop(F.silu(h)))
        return (self.skip(x) + h) / math.sqrt(2)


class Attention(nn.Module):
    """Multi-head self-attention over the pixels of a feature map (scaled dot product)."""

    def __init__(self, ch: int, heads: int):
        super().__init__()
        if ch % heads:
            raise ValueError(f"{ch} channels do not split into {heads} attention heads")
        self.heads, self.norm = heads, group_norm(ch)
        self.qkv, self.proj = nn.Conv2d(ch, 3 * ch, 1), nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return (x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))) / math.sqrt(2)
