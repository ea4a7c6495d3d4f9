"""Sampling controls of the background papers, as functions of the sampler's inputs.

- Realism (DiSS, Cheng et al. 2023, Sec. 3.3): the sketch condition is low-passed, down to N x N and back up, so
  that the model follows the lines less closely and its prior more. DiSS maps a realism weight s in [0, 1] to N
  linearly between m/8 + k and 1 + k for an m x m condition; here s = 0 must leave the sketch untouched (today's
  output, bit for bit), so N falls geometrically from m at s = 0 to m/8 at s = 1 (DiSS's mildest filter):
  N = round(m / 8^s). The filter is :func:`utils.lowpass.lowpass_sketch`, which training can apply to its sketches
  too (``data.sketch_lowpass``), as DiSS trains with them.
- Adjustable noise start (PASD, Yang et al. 2023, Sec. 3.3, eq. 3-4): instead of pure noise at sigma_max the
  sampler starts from an initial image (the reference, a flat fill, an earlier result) noised to sigma_start, on the
  same grid truncated at sigma_start. In EDM's coordinates x = y + sigma n, PASD's
  z = sqrt(a) z_init + sqrt(1 - a) n is x = z / sqrt(a) with sigma_start = sqrt((1 - a) / a). The grid points
  above sigma_start are skipped: that many network evaluations fewer. The initial image can also be the
  network's own correspondence warp of the reference (``ref_warp``, :meth:`models.unet.UNet.warped_reference`):
  the reference's colours moved onto the sketch's lines, which a noise start then keeps at low frequencies.
"""
from __future__ import annotations

from typing import Literal

import torch

from utils.lowpass import lowpass_sketch, realism_size  # noqa: F401 - the realism control (shared with training)

#: What a noise start can begin from without an image file: the reference, its mean colour, the network's warp.
INIT_KINDS = ("reference", "flat", "warp")
InitKind = Literal[INIT_KINDS]


def has_warp(net: torch.nn.Module | None) -> bool:
    """Whether ``net`` has a correspondence warp of the reference (a U-Net with ``ref_warp``)."""
    return getattr(net, "warp", None) is not None


def start_image(kind: str, sketch: torch.Tensor, reference: torch.Tensor, net: torch.nn.Module | None = None,
                  ref_mask: torch.Tensor | None = None) -> torch.Tensor:
    """The image [B, 3, H, W] in [-1, 1] a noise start begins from: the ``reference`` itself, its mean colour as a
    flat fill, or ``net``'s correspondence warp of it onto ``sketch`` (a network with ``ref_warp``). Of several
    references [B, K, 3, H, W] (masked by ``ref_mask``), the first gives the first two (its shown pixels), and the
    warp takes all."""
    if kind == "warp":
        if not has_warp(net):
            raise ValueError("init 'warp' needs a network with a correspondence warp (ref_warp, "
                             "configs/variants/refattn.yaml)")
        return net.warped_reference(sketch, reference, ref_mask)
    shown = ref_mask[:, :1].to(reference.dtype) if ref_mask is not None and ref_mask.dim() == 4 else None
    reference = reference[:, 0] if reference.dim() == 5 else reference
    if kind == "reference":
        return reference
    if kind == "flat":  # over the first reference's shown pixels
        if shown is None:
            return reference.mean(dim=(2, 3), keepdim=True).expand_as(reference)
        mean = (reference * shown).sum(dim=(2, 3), keepdim=True) / shown.sum(dim=(2, 3), keepdim=True).clamp_min(1)
        return mean.expand_as(reference)
    raise ValueError(f"init must be one of {', '.join(INIT_KINDS)}, got {kind!r}")


def start_grid(sigmas: torch.Tensor, sigma_start: float | None) -> torch.Tensor:
    """The grid a noise start at ``sigma_start`` samples on: sigma_start, then the grid's points below it (the
    last, 0, kept). None, or a sigma_start at or above the grid's sigma_max, is plain sampling: the grid itself (at
    sigma_max the image would be 1/80 of the noise, and pure noise is what the model was trained to start from)."""
    if sigma_start is None or sigma_start >= float(sigmas[0]):
        return sigmas
    if sigma_start <= 0:
        raise ValueError(f"sigma_start must be positive, got {sigma_start}")
    rest = sigmas[sigmas < sigma_start]
    return torch.cat([rest.new_tensor([sigma_start]), rest])
