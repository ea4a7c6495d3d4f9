"""The reference's paths into the U-Net besides the input channels (see models/unet.py's docstring): a small CNN that
maps an image to one feature map per level, cross-attention from the decoder to the reference (PASD; SCFT with
sketch keys), and the correspondence warp that moves the reference's colours onto the sketch by matching line
structure, over one reference or over the union of K references' positions."""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from .layers import group_norm

#: The reference's channels: the last ones of the input (the Denoiser concatenates noisy image, sketch, reference).
REF_CHANNELS = 3


class CrossAttention(nn.Module):
    """Multi-head attention of a feature map to the reference; x + proj(attention), with proj zero-initialised
    (identity at initialisation). The values are the reference's features of ``ref_ch`` channels plus its own
    colours at that resolution; the colours bypass the normalisation: the encoder's GroupNorms remove each
    channel's mean over the image, which is exactly the absolute colour the values must carry.

    Without ``match_ch`` the queries come from the feature map and the keys from the reference's features (PASD).
    With it, queries and keys are the input sketch's and the reference sketch's structure features (``match_ch``
    channels), through one shared projection (SCFT)."""

    def __init__(self, ch: int, ref_ch: int, heads: int, match_ch: int | None = None):
        super().__init__()
        if ch % heads:
            raise ValueError(f"{ch} channels do not split into {heads} attention heads")
        self.heads, self.ref_norm = heads, group_norm(ref_ch)
        if match_ch is None:
            self.norm, self.q = group_norm(ch), nn.Conv2d(ch, ch, 1)
            self.kv = nn.Conv2d(ref_ch + REF_CHANNELS, 2 * ch, 1)
        else:
            self.match_norm, self.match = group_norm(match_ch), nn.Conv2d(match_ch, ch, 1)
            self.v = nn.Conv2d(ref_ch + REF_CHANNELS, ch, 1)
        self.proj = nn.Conv2d(ch, ch, 1)
        nn.init.zeros_(self.proj.weight)
        nn.init.zeros_(self.proj.bias)

    def forward(self, x: torch.Tensor, ref: torch.Tensor, colours: torch.Tensor,
                structure: tuple[torch.Tensor, torch.Tensor] | None = None) -> torch.Tensor:
        b, c, h, w = x.shape

        def split(t: torch.Tensor) -> torch.Tensor:  # [B, C, ...] -> [B, heads, pixels, C / heads]
            return t.reshape(b, self.heads, c // self.heads, -1).transpose(-1, -2)

        values = torch.cat([self.ref_norm(ref), colours.to(ref.dtype)], dim=1)
        if structure is None:
            q, (k, v) = self.q(self.norm(x)), self.kv(values).chunk(2, dim=1)
        else:
            q, k = (self.match(self.match_norm(s)) for s in structure)
            v = self.v(values)
        out = F.scaled_dot_product_attention(split(q), split(k), split(v))
        return x + self.proj(out.transpose(-1, -2).reshape(b, c, h, w))


class CorrespondenceWarp(nn.Module):
    """The reference's colours moved onto the sketch by structure matching at one level: a softmax over the
    reference's positions of s cos(W n(f_sketch), W n(f_ref)), with one projection W for both and a learnt scale s
    (cosine similarity with a temperature, as CoCosNet's correspondence, Sec. 3.1), applied to the reference's
    colours average-pooled to that level, then upsampled bilinearly to the image (``ref_warp``, module docstring)."""

    #: The scale s at initialisation: sharp enough that an untrained encoder already warps by structure.
    INIT_SCALE = 30.0

    def __init__(self, ch: int, level: int):
        super().__init__()
        self.level, self.norm, self.match = level, group_norm(ch), nn.Conv2d(ch, ch, 1)
        self.log_scale = nn.Parameter(torch.tensor(math.log(self.INIT_SCALE)))

    #: The most attention weights one chunk of queries may hold (several references): 2^25 floats, 128 MiB in fp32.
    CHUNK_ELEMENTS = 2**25

    def _keys(self, f: torch.Tensor) -> torch.Tensor:
        """Unit-norm matching features [B, C, h, w] -> [B, h w, C]."""
        return F.normalize(self.match(self.norm(f)), dim=1).flatten(2).transpose(1, 2)

    def forward(self, sketch: torch.Tensor, ref_sketch: torch.Tensor, ref: torch.Tensor,
                ref_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The warp of ``ref`` [B, 3, H, W] by features ``sketch`` and ``ref_sketch`` [B, C, h, w]; or of K references
        ``ref`` [B, K, 3, H, W] with ``ref_sketch`` [B, K, C, h, w], one softmax over all K h w positions, so that
        time and memory grow linearly in K. ``ref_mask`` [B, K] masks out padding; [B, K, H, W] also the pixels
        that are no part of a reference (a transparent background): a cell of the level's grid takes part when it
        holds one shown pixel, with the mean colour of its shown pixels."""
        if ref.dim() == 5:
            return self._forward_several(sketch, ref_sketch, ref, ref_mask)
        b, _, h, w = sketch.shape
        q, k = self._keys(sketch), self._keys(ref_sketch)
        v = self._colours(ref, None)[0].flatten(2).transpose(1, 2).to(q.dtype)  # [B, N, 3]
        warped = F.scaled_dot_product_attention(q * self.log_scale.exp(), k, v, scale=1.0)
        return self._to_image(warped, b, h, w, ref.dtype)

    def _colours(self, ref: torch.Tensor, shown: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The colours of ``ref`` [N, 3, H, W] on this level's grid, and which cells show any pixel of it [N, 1, h, w]
        (``shown`` [N, H, W]; None: every pixel, and the plain average pool)."""
        if shown is None:
            return (F.avg_pool2d(ref, 2**self.level) if self.level else ref), None
        weight = shown.to(ref.dtype)[:, None]
        if not self.level:
            return ref * weight, weight > 0
        cover = F.avg_pool2d(weight, 2**self.level)
        return F.avg_pool2d(ref * weight, 2**self.level) / cover.clamp_min(1e-6), cover > 0

    def _forward_several(self, sketch: torch.Tensor, ref_sketch: torch.Tensor, ref: torch.Tensor,
                         ref_mask: torch.Tensor | None) -> torch.Tensor:
        b, n_refs, _, h, w = ref_sketch.shape
        q = self._keys(sketch) * self.log_scale.exp()
        k = self._keys(ref_sketch.flatten(0, 1)).reshape(b, n_refs * h * w, -1)  # [B, K N, C]
        per_pixel = ref_mask is not None and ref_mask.dim() == 4
        colours, shown = self._colours(ref.flatten(0, 1), ref_mask.flatten(0, 1) if per_pixel else None)
        v = colours.flatten(2).transpose(1, 2).reshape(b, n_refs * h * w, 3).to(q.dtype)
        mask = None  # True where a position takes part
        if per_pixel:
            mask = shown.to(q.device).reshape(b, 1, n_refs * h * w)
        elif ref_mask is not None:
            mask = ref_mask.to(q.device, torch.bool)[:, None, :, None].expand(b, 1, n_refs, h * w).flatten(2)
        rows = max(1, self.CHUNK_ELEMENTS // (b * k.shape[1]))  # queries are independent: chunk them
        warped = torch.cat([F.scaled_dot_product_attention(q[:, i:i + rows], k, v, attn_mask=mask, scale=1.0)
                            for i in range(0, q.shape[1], rows)], dim=1)
        return self._to_image(warped, b, h, w, ref.dtype)

    def _to_image(self, warped: torch.Tensor, b: int, h: int, w: int, dtype: torch.dtype) -> torch.Tensor:
        warped = warped.transpose(1, 2).reshape(b, -1, h, w)
        if self.level:
            warped = F.interpolate(warped, scale_factor=2**self.level, mode="bilinear", align_corners=False)
        return warped.to(dtype)


class ReferenceEncoder(nn.Module):
    """An image (the reference, or a sketch) -> one feature map per U-Net level (level l at 1/2^l of the image
    side): a conv stem, then per level a (stride-2 from level 1 on) conv, GroupNorm, SiLU, conv, GroupNorm, SiLU."""

    def __init__(self, in_ch: int, channels: list[int]):
        super().__init__()
        self.stem = nn.Conv2d(in_ch, channels[0], 3, padding=1)
        self.levels, prev = nn.ModuleList(), channels[0]
        for level, ch in enumerate(channels):
            self.levels.append(nn.Sequential(
                nn.Conv2d(prev, ch, 3, stride=2 if level else 1, padding=1), group_norm(ch), nn.SiLU(),
                nn.Conv2d(ch, ch, 3, padding=1), group_norm(ch), nn.SiLU()))
            prev = ch

    def forward(self, img: torch.Tensor) -> list[torch.Tensor]:
        h, feats = self.stem(img), []
        for layers in self.levels:
            h = layers(h)
            feats.append(h)
        return feats
