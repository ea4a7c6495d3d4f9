"""SSIM-guided sampling (SSIMBaD's test-time guidance): after every sampler step

    x <- x - s * grad_x (1 - SSIM(g(x0_hat(x)), target))

where x0_hat(x) = D(x; sigma, cond) is the denoiser's current prediction. Two targets:

- ``"sketch"`` (the default, and the only one usable at deployment): the input sketch, with g = the project's
  differentiable XDoG (:func:`utils.xdog.xdog_torch`, soft ramp r = 20 so gradients flow). It asks the lines of the
  prediction to coincide with the lines the user drew.
- ``"gt"``: the ground-truth colour image with g = identity. This is an oracle for analysis only: it needs the
  ground truth (refused without it) and every output made with it must be marked "oracle" (see
  :func:`is_oracle`; :class:`~models.diffusion.DiffusionColorizer` marks its test folder and metric names).

The loss is summed over the batch of per-image SSIMs, so each image gets the gradient of its own 1 - SSIM: the step
does not depend on the batch size. SSIM is computed on [0, 1] images (``(x + 1) / 2`` of the [-1, 1] tensors, not
clamped, so that out-of-range pixels still get gradients) with the 7x7 box-window SSIM :func:`utils.ssim.ssim_box`.

Scale: the gradient of a mean-over-pixels SSIM shrinks like 1 / (H W), so a scale chosen at one image size moves
pixels four times less at twice the side. :data:`DEFAULT_SCALE` is the scale to switch guidance on with; models keep
guidance off (s = 0) unless asked.
``s = 0`` returns no guide at all, so sampling is bit-identical to unguided sampling.
"""
from __future__ import annotations

from typing import Callable, Literal

import torch

from utils.errors import UserError
from utils.ssim import ssim_box
from utils.xdog import xdog_torch

GUIDANCE_TARGETS = ("sketch", "gt")
GuidanceTarget = Literal[GUIDANCE_TARGETS]
#: The scale measured best on the 64 px demo (docs/experiments/trajectory-refinement.md); at 256 px the same s
#: moves each pixel 16x less.
DEFAULT_SCALE = 10.0

Guide = Callable[[torch.Tensor], torch.Tensor]


def check_target(target: str) -> None:
    if target not in GUIDANCE_TARGETS:
        raise UserError(f"guidance target must be one of {', '.join(GUIDANCE_TARGETS)}, got {target!r}")


def check_scale(scale: float, name: str = "the SSIM guidance scale") -> None:
    if scale < 0:
        raise UserError(f"{name} must be >= 0, got {scale:g}")


def is_oracle(scale: float, target: str) -> bool:
    """Whether sampling with these settings looks at the ground truth (and its outputs must say "oracle")."""
    return target == "gt" and scale != 0


def ssim_guide(
    scale: float,
    sketch: torch.Tensor | None,
    target: str = "sketch",
    gt: torch.Tensor | None = None,
    xdog_sigma: float = 0.5,
) -> Guide | None:
    """The ``guide(denoised) -> loss`` callable the samplers take, or None when ``scale`` is 0.

    Args:
        scale: s, the guidance step (0 disables guidance).
        sketch: the input sketches [B, 1, H, W] in [-1, 1] (target "sketch").
        target: "sketch" (honest) or "gt" (oracle, analysis only).
        gt: the ground-truth images [B, 3, H, W] in [-1, 1]; required for target "gt".
        xdog_sigma: blur sigma of the XDoG applied to the prediction (target "sketch").
    """
    check_target(target)
    if target == "gt" and gt is None:
        raise UserError("guidance target 'gt' is an oracle for analysis only and needs the ground truth, which this "
                        "input does not have; use the sketch target")
    check_scale(scale)
    if scale == 0:
        return None
    reference = sketch if target == "sketch" else gt
    if reference is None:
        raise UserError("SSIM guidance towards the sketch needs the input sketch")

    def guide(denoised: torch.Tensor) -> torch.Tensor:
        pred = xdog_torch(denoised.float(), sigma=xdog_sigma) if target == "sketch" else denoised.float()
        # A clone, because batches made under torch.inference_mode cannot be saved for backward.
        goal = reference.detach().to(device=pred.device, dtype=pred.dtype).clone()
        per_image = ssim_box((pred + 1) / 2, (goal + 1) / 2, data_range=1.0, reduction="none")
        return scale * (1 - per_image).sum()

    return guide
