"""The U-Net F of the denoiser: GroupNorm/SiLU residual blocks with a noise-level embedding, self-attention where
configured, skip connections between the encoder and the decoder (Ho et al. 2020; Dhariwal & Nichol 2021).

Defaults are the paper's widths: base 64 channels, multipliers (1, 2, 4, 8), 2 residual blocks per level and
self-attention with 4 heads at the bottleneck; 7 input channels (noisy image 3 + sketch 1 + reference 3), 3 outputs.
The default layout is DDPM/ADM's: stride-2 conv down, nearest + 3x3 conv up, and the input conv's features as the
last decoder level's extra skip (num_blocks + 1 decoder blocks at every level). The published SSIMBaD network
resamples with a 2x2 average pool and bare nearest upsampling and skips only the encoder blocks' outputs
(``resample="pool", input_skip=False``): the same widths and blocks at 78 % of the FLOPs (273 against 352 GFLOP per
256 px image forward), since the dropped convs and the dropped block all run at the decoder's high resolutions.
Attention can also be placed at encoder/decoder levels by index (0 = full resolution), which keeps a config
meaningful at any image size.

Reference cross-attention (``ref_attention``): the last 3 input channels (the reference in the Denoiser's layout)
also go through a small CNN encoder, and the decoder blocks whose output lies at a listed level (and the middle
block with ``ref_attention_mid``) attend to its features: queries from the U-Net's feature map, keys and values
from the reference's at the same resolution, an output projection initialised to zero so that a fresh model is the
plain one (PASD's pixel-aware cross attention, Yang et al. 2023, Sec. 3.1). Colour can then come from anywhere in
the reference, not only from the same pixel; ``ref_concat=False`` removes the pixel-aligned path altogether.

``ref_keys="sketch"`` matches line structure instead, as SCFT does (Lee et al. 2020, "Reference-based sketch image
colorization using augmented-self reference", Sec. 3.2): the reference's own XDoG sketch is drawn inside the network,
one encoder maps it and the input sketch to features, and one shared projection turns those into keys and queries,
so that the same local lines in both sketches attend to each other from the first step; the values still carry the
reference's colour features. The attention then no longer depends on the noisy image or the noise level.

``ref_warp=L`` uses the same sketch-to-sketch matching once, before the network: at level L, every position of the
input sketch takes the attention-weighted mean of the reference's colours, and this warped reference, upsampled,
enters the input channels, in place of the reference or, with ``ref_concat=True``, next to it (the correspondence
warp of exemplar-based colorization: Zhang et al. 2019, "Deep exemplar-based video colorization", Sec. 3.1; CoCosNet,
Zhang et al. 2020, Sec. 3.1). The network then
gets an aligned reference whatever the reference's pose, and uses it the way the paper's network uses its
pixel-aligned one. Attention in the decoder cannot set an image's absolute colours as easily: every GroupNorm after
it, down to the output's, removes each group's mean over the image (at 32 or 64 channels a group is one or two
channels), so a colour added uniformly by the attention is gone by the output; the input channels reach the output
through the same network as the paper's reference does. With the warp alone (no cross-attention), ``forward`` also
takes K references [B, K, 3, H, W] and their mask: one softmax over all their positions (a character sheet), the
input channels keeping the first. The reference modules live in :mod:`models.correspondence`, the blocks in
:mod:`models.layers`.
"""
from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from utils.errors import OptionError
from utils.xdog import RAMP, SIGMAS, xdog_torch

from .correspondence import REF_CHANNELS, CorrespondenceWarp, CrossAttention, ReferenceEncoder
from .layers import Attention, FourierEmbedding, ResBlock, group_norm
from .network import Network


#: The sketch's channel: the first after the 3 of the noisy image.
SKETCH_CHANNEL = 3
#: Down/upsampling between levels: a stride-2 conv and nearest + conv (DDPM, ADM), or a 2x2 average pool and nearest
#: upsampling alone (the published SSIMBaD network's; no parameters and ~17 % fewer FLOPs at the paper's size).
RESAMPLE = ("conv", "pool")
Resample = Literal[RESAMPLE]
#: Where the keys of the reference cross-attention come from: the reference's features (PASD) or its sketch (SCFT).
REF_KEYS = ("reference", "sketch")
RefKeys = Literal[REF_KEYS]


class UNet(nn.Module, Network):
    """The denoiser's network F (see the module docstring).

    Args:
        in_channels: input channels: noisy image 3 + sketch 1 + reference 3 (11 with colour hints).
        out_channels: output channels (the colour image).
        base_channels: channels of the first level; level i has base_channels * channel_mult[i].
        channel_mult: width multiplier per level; one level per entry (each halves the resolution).
        num_blocks: residual blocks per encoder level (decoder levels have one more per skip).
        attn_levels: levels (0 = full resolution) whose blocks get self-attention.
        mid_attention: self-attention in the bottleneck.
        attn_heads: heads of every attention layer.
        dropout: dropout inside the residual blocks.
        emb_scale: frequency scale of the Fourier noise-level embedding.
        gradient_checkpointing: recompute activations in the backward pass (less memory, one more forward).
        ref_attention: decoder levels with reference cross-attention (PASD).
        ref_attention_mid: reference cross-attention in the bottleneck.
        ref_concat: the reference also enters the input channels (pixel-aligned).
        ref_keys: cross-attention keys from the reference's features or from its sketch (SCFT).
        ref_warp: level of the correspondence warp of the reference onto the sketch (None: no warp).
        resample: levels change by stride-2 conv + nearest-conv ("conv") or by 2x2 pooling + nearest ("pool").
        input_skip: the input conv's features are the last decoder level's extra skip (DDPM / ADM).
    """

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
        ref_attention: tuple[int, ...] = (),
        ref_attention_mid: bool = False,
        ref_concat: bool = True,
        ref_keys: RefKeys = "reference",
        ref_warp: int | None = None,
        resample: Resample = "conv",
        input_skip: bool = True,
    ):
        super().__init__()
        self.init_args = dict(
            in_channels=in_channels, out_channels=out_channels, base_channels=base_channels,
            channel_mult=tuple(channel_mult), num_blocks=num_blocks, attn_levels=tuple(attn_levels),
            mid_attention=mid_attention, attn_heads=attn_heads, dropout=dropout, emb_scale=emb_scale,
            gradient_checkpointing=gradient_checkpointing, ref_attention=tuple(ref_attention),
            ref_attention_mid=ref_attention_mid, ref_concat=ref_concat, ref_keys=ref_keys,
            ref_warp=ref_warp, resample=resample, input_skip=input_skip,
        )
        if any(not 0 <= level < len(channel_mult) for level in ref_attention):
            raise OptionError("ref_attention", f"levels {tuple(ref_attention)} must lie in 0..{len(channel_mult) - 1}")
        if resample not in RESAMPLE:
            raise OptionError("resample", f"must be one of {', '.join(RESAMPLE)}, got {resample!r}")
        if ref_keys not in REF_KEYS:
            raise OptionError("ref_keys", f"must be one of {', '.join(REF_KEYS)}, got {ref_keys!r}")
        uses_ref = bool(ref_attention) or ref_attention_mid
        if ref_warp is not None and not 0 <= ref_warp < len(channel_mult):
            raise OptionError("ref_warp", f"must be a level in 0..{len(channel_mult) - 1}, got {ref_warp}")
        if not ref_concat and not uses_ref and ref_warp is None:
            raise OptionError("ref_concat", "False needs ref_warp, ref_attention levels or ref_attention_mid: the "
                              "reference would reach the network by no path")
        self.gradient_checkpointing = gradient_checkpointing
        self.levels = len(channel_mult)
        emb_ch = 4 * base_channels
        self.embed = nn.Sequential(
            FourierEmbedding(base_channels, emb_scale), nn.Linear(base_channels, emb_ch), nn.SiLU(),
            nn.Linear(emb_ch, emb_ch),
        )
        self.ref_concat = ref_concat
        conv_in = in_channels - (0 if ref_concat else REF_CHANNELS) + (REF_CHANNELS if ref_warp is not None else 0)
        self.conv_in = nn.Conv2d(conv_in, base_channels, 3, padding=1)
        ref_chs = [base_channels * m for m in channel_mult]
        self.ref_encoder = ReferenceEncoder(REF_CHANNELS, ref_chs) if uses_ref else None
        matching = uses_ref and ref_keys == "sketch"
        depth = self.levels if matching else (ref_warp + 1 if ref_warp is not None else 0)
        self.sketch_encoder = ReferenceEncoder(1, ref_chs[:depth]) if depth else None
        self.warp = CorrespondenceWarp(ref_chs[ref_warp], ref_warp) if ref_warp is not None else None

        self.down, skips, ch = nn.ModuleList(), [base_channels] if input_skip else [], base_channels
        for level, mult in enumerate(channel_mult):
            for _ in range(num_blocks):
                layers = [ResBlock(ch, base_channels * mult, emb_ch, dropout)]
                ch = base_channels * mult
                if level in attn_levels:
                    layers.append(Attention(ch, attn_heads))
                self.down.append(nn.ModuleList(layers))
                skips.append(ch)
            if level < self.levels - 1:
                down = nn.Conv2d(ch, ch, 3, stride=2, padding=1) if resample == "conv" else nn.AvgPool2d(2)
                self.down.append(nn.ModuleList([down]))
                skips.append(ch)

        mid = [ResBlock(ch, ch, emb_ch, dropout)] + ([Attention(ch, attn_heads)] if mid_attention else [])
        self.mid = nn.ModuleList(mid + [ResBlock(ch, ch, emb_ch, dropout)])
        self.ref_mid = (CrossAttention(ch, ref_chs[-1], attn_heads, ref_chs[-1] if matching else None)
                        if ref_attention_mid else None)

        # Cross-attention after decoder block i, keyed by i, at the level of the block's output.
        self.up, self.ref_attn, self.up_levels = nn.ModuleList(), nn.ModuleDict(), []
        for level, mult in reversed(list(enumerate(channel_mult))):
            blocks = num_blocks + 1 if level > 0 or input_skip else num_blocks  # one per skip
            for i in range(blocks):
                layers = [ResBlock(ch + skips.pop(), base_channels * mult, emb_ch, dropout)]
                ch = base_channels * mult
                if level in attn_levels:
                    layers.append(Attention(ch, attn_heads))
                out_level = level
                if level > 0 and i == blocks - 1:
                    layers.append(nn.Upsample(scale_factor=2, mode="nearest"))
                    if resample == "conv":
                        layers.append(nn.Conv2d(ch, ch, 3, padding=1))
                    out_level = level - 1
                if out_level in ref_attention:
                    self.ref_attn[str(len(self.up))] = CrossAttention(
                        ch, ref_chs[out_level], attn_heads, ref_chs[out_level] if matching else None)
                self.up_levels.append(out_level)
                self.up.append(nn.ModuleList(layers))

        self.out = nn.Sequential(group_norm(ch), nn.SiLU(), nn.Conv2d(ch, out_channels, 3, padding=1))
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

    def _structure(self, sketch: torch.Tensor, ref: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per level: the structure features of the input sketches [B] and of the references' own sketches (one
        encoder; ``ref`` [B, 3, H, W], or [B K, 3, H, W] for K references each)."""
        with torch.no_grad():  # the reference's sketch, as the data's sketches are drawn (utils.xdog)
            ref_sketch = xdog_torch(ref.float(), sigma=SIGMAS[len(SIGMAS) // 2], ramp=RAMP).to(sketch.dtype)
        b = sketch.shape[0]
        return [(f[:b], f[b:]) for f in self.sketch_encoder(torch.cat([sketch, ref_sketch]))]

    @property
    def takes_several_references(self) -> bool:
        """Whether :meth:`forward` takes K references: the correspondence warp matches the sketch against all of
        them (the input channels take the first; reference cross-attention takes one)."""
        return self.warp is not None and self.ref_encoder is None

    def warped_reference(self, sketch: torch.Tensor, ref: torch.Tensor,
                         ref_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The reference [B, 3, H, W], or K references [B, K, 3, H, W] with their mask ([B, K] or [B, K, H, W],
        :class:`models.denoiser.Cond`), as ``ref_warp`` moves it (them) onto the sketch [B, 1, H, W]: what the
        input gets."""
        if self.warp is None:
            raise ValueError("this network does not warp its reference (ref_warp is not set)")
        if ref.dim() == 4:
            return self.warp(*self._structure(sketch, ref)[self.warp.level], ref)
        if not self.takes_several_references:
            raise ValueError("several references need the correspondence warp without reference cross-attention")
        own, theirs = self._structure(sketch, ref.flatten(0, 1))[self.warp.level]
        return self.warp(own, theirs.unflatten(0, ref.shape[:2]), ref, ref_mask)

    def _reference(self, ref: torch.Tensor, structure: list | None) -> list[tuple]:
        """Per level: the arguments of CrossAttention after the feature map (features, colours[, structure])."""
        feats = self.ref_encoder(ref)
        colours = [F.avg_pool2d(ref, 2**level) if level else ref for level in range(self.levels)]
        if self.init_args["ref_keys"] != "sketch":
            return list(zip(feats, colours))
        return list(zip(feats, colours, structure))

    def forward(self, x: torch.Tensor, c_noise: torch.Tensor, references: torch.Tensor | None = None,
                ref_mask: torch.Tensor | None = None) -> torch.Tensor:
        """F(x, c_noise): ``x`` is [noisy image, sketch, (hints,) reference] on channels; ``references`` [B, K, 3, H, W]
        with ``ref_mask`` ([B, K] or [B, K, H, W]) give the correspondence warp K references to match (x's reference
        is the first)."""
        factor = 2 ** (self.levels - 1)
        if x.shape[-1] % factor or x.shape[-2] % factor:
            raise ValueError(f"image size {tuple(x.shape[-2:])} must be divisible by {factor} for this U-Net")
        emb = self.embed(c_noise.reshape(-1).expand(x.shape[0]))
        sketch, ref = x[:, SKETCH_CHANNEL:SKETCH_CHANNEL + 1], x[:, -REF_CHANNELS:]
        structure = refs = warped = None
        if references is not None:
            warped = self.warped_reference(sketch, references, ref_mask)
        else:
            structure = self._structure(sketch, ref) if self.sketch_encoder is not None else None
            refs = self._reference(ref, structure) if self.ref_encoder is not None else None
            if self.warp is not None:
                warped = self.warp(*structure[self.warp.level], ref)
        inputs = [x if self.ref_concat else x[:, :-REF_CHANNELS]]
        if warped is not None:
            inputs.append(warped)
        h = self.conv_in(torch.cat(inputs, dim=1) if len(inputs) > 1 else inputs[0])
        hs = [h] if self.init_args["input_skip"] else []
        for layers in self.down:
            h = self._block(layers, h, emb)
            hs.append(h)
        h = self._block(self.mid, h, emb)
        if self.ref_mid is not None:
            h = self.ref_mid(h, *refs[-1])
        for i, layers in enumerate(self.up):
            h = self._block(layers, torch.cat([h, hs.pop()], dim=1), emb)
            if str(i) in self.ref_attn:
                h = self.ref_attn[str(i)](h, *refs[self.up_levels[i]])
        return self.out(h)
