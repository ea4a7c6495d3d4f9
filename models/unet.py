"""The U-Net F of the denoiser: GroupNorm/SiLU residual blocks with a noise-level embedding, self-attention where
configured, skip connections between the encoder and the decoder (Ho et al. 2020; Dhariwal & Nichol 2021).

Defaults are the paper's network: base 64 channels, multipliers (1, 2, 4, 8), 2 residual blocks per level and
self-attention with 4 heads at the bottleneck; 7 input channels (noisy image 3 + sketch 1 + reference 3), 3 outputs.
Attention can also be placed at encoder/decoder levels by index (0 = full resolution), which keeps a config
meaningful at any image size.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint


def _norm(ch: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(32, ch // 4) if ch % 32 else 32, ch)


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
        self.norm1, self.conv1 = _norm(cin), nn.Conv2d(cin, cout, 3, padding=1)
        self.emb = nn.Linear(emb_ch, 2 * cout)  # adaptive scale and shift of the second norm
        self.norm2, self.drop, self.conv2 = _norm(cout), nn.Dropout(dropout), nn.Conv2d(cout, cout, 3, padding=1)
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
        self.heads, self.norm = heads, _norm(ch)
        self.qkv, self.proj = nn.Conv2d(ch, 3 * ch, 1), nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        b, c, h, w = x.shape
        q, k, v = self.qkv(self.norm(x)).reshape(b, 3, self.heads, c // self.heads, h * w).unbind(1)
        out = F.scaled_dot_product_attention(q.transpose(-1, -2), k.transpose(-1, -2), v.transpose(-1, -2))
        return (x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))) / math.sqrt(2)


class UNet(nn.Module):
    def __init__(
        self,
        in_channels: int = 7,
        out_channels: int = 3,
        base_channels: int = 64,
        channel_mult: tuple[int, ...] = (1, 2, 4, 8),
        num_blocks: int = 2,
        attn_levels: tuple[int, ...] = (),
        mid_attention: bool = True,
        attn_heads: int = 4,
        dropout: float = 0.0,
        emb_scale: float = 16.0,
        gradient_checkpointing: bool = False,
    ):
        super().__init__()
        self.init_args = dict(
            in_channels=in_channels, out_channels=out_channels, base_channels=base_channels,
            channel_mult=tuple(channel_mult), num_blocks=num_blocks, attn_levels=tuple(attn_levels),
            mid_attention=mid_attention, attn_heads=attn_heads, dropout=dropout, emb_scale=emb_scale,
            gradient_checkpointing=gradient_checkpointing,
        )
        self.gradient_checkpointing = gradient_checkpointing
        self.levels = len(channel_mult)
        emb_ch = 4 * base_channels
        self.embed = nn.Sequential(
            FourierEmbedding(base_channels, emb_scale), nn.Linear(base_channels, emb_ch), nn.SiLU(),
            nn.Linear(emb_ch, emb_ch),
        )
        self.conv_in = nn.Conv2d(in_channels, base_channels, 3, padding=1)

        self.down, skips, ch = nn.ModuleList(), [base_channels], base_channels
        for level, mult in enumerate(channel_mult):
            for _ in range(num_blocks):
                layers = [ResBlock(ch, base_channels * mult, emb_ch, dropout)]
                ch = base_channels * mult
                if level in attn_levels:
                    layers.append(Attention(ch, attn_heads))
                self.down.append(nn.ModuleList(layers))
                skips.append(ch)
            if level < self.levels - 1:
                self.down.append(nn.ModuleList([nn.Conv2d(ch, ch, 3, stride=2, padding=1)]))
                skips.append(ch)

        mid = [ResBlock(ch, ch, emb_ch, dropout)] + ([Attention(ch, attn_heads)] if mid_attention else [])
        self.mid = nn.ModuleList(mid + [ResBlock(ch, ch, emb_ch, dropout)])

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(channel_mult))):
            for i in range(num_blocks + 1):
                layers = [ResBlock(ch + skips.pop(), base_channels * mult, emb_ch, dropout)]
                ch = base_channels * mult
                if level in attn_levels:
                    layers.append(Attention(ch, attn_heads))
                if level > 0 and i == num_blocks:
                    layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
                    layers.append(nn.Conv2d(ch, ch, 3, padding=1))
                self.up.append(nn.ModuleList(layers))

        self.out = nn.Sequential(_norm(ch), nn.SiLU(), nn.Conv2d(ch, out_channels, 3, padding=1))
        nn.init.zeros_(self.out[-1].weight)
        nn.init.zeros_(self.out[-1].bias)

    def _run(self, layers: nn.ModuleList, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        for layer in layers:
            h = layer(h, emb) if isinstance(layer, (ResBlock, Attention)) else layer(h)
        return h

    def _block(self, layers: nn.ModuleList, h: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        if self.gradient_checkpointing and torch.is_grad_enabled():
            return checkpoint(self._run, layers, h, emb, use_reentrant=False)
        return self._run(layers, h, emb)

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor) -> torch.Tensor:
        factor = 2 ** (self.levels - 1)
        if x.shape[-1] % factor or x.shape[-2] % factor:
            raise ValueError(f"image size {tuple(x.shape[-2:])} must be divisible by {factor} for this U-Net")
        emb = self.embed(c_noise.reshape(-1).expand(x.shape[0]))
        h = self.conv_in(x)
        hs = [h]
        for layers in self.down:
            h = self._block(layers, h, emb)
            hs.append(h)
        h = self._block(self.mid, h, emb)
        for layers in self.up:
            h = self._block(layers, torch.cat([h, hs.pop()], dim=1), emb)
        return self.out(h)
