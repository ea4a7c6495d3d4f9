"""Several training references of one target, each an independent view of it (a character sheet's panels).

With ``references_max`` = M > 1 a training item draws K ~ U{1..M} views. The first is the single-reference
training's reference, a TPS warp (:mod:`data.tps`), so that a model trained on several references still learns what
one aligned reference gives. Each further view's kind is drawn on its own:

- "tps": another TPS warp of the target;
- "mirror": the target mirrored left-right (the ``reference_flip`` idea, :mod:`data.reference_aug`);
- "crop": a square of ``REGION`` of the side, anywhere in the image, zoomed to full size (:func:`crop_zoom`) and
  TPS-warped: a close-up that holds only part of the colours, at another scale;
- "partial": a rectangle of ``REGION`` of each side kept in place, the rest blank (mid-grey, 0 in [-1, 1], the
  value of a dropped reference, :data:`models.guidance.NULL_VALUE`, and not shown: a transparent background) or,
  half the time, another training image (shown: a distractor), then TPS-warped: one panel of a character sheet.

Views are float32 (H, W, 4) arrays: the colours in [-1, 1] (a blank is exactly 0), then 1 where the pixel is part
of the reference and 0 where it is not (the ``ref_mask`` of :class:`models.denoiser.Cond`), which every geometric
step (the TPS warp, a mirror) moves with the colours. ``crop_zoom`` also makes the
evaluation protocol's multi-reference setting (:mod:`data.protocol`), on uint8 images.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from .tps import TPSParams

KINDS = ("tps", "mirror", "crop", "partial")
#: The side of a crop, and of a partial view's kept rectangle, as a fraction of the image side: U(low, high).
REGION = (0.4, 0.7)


def signed(img: np.ndarray) -> np.ndarray:
    """uint8 (H, W, 3) -> float32 in [-1, 1] (the values :func:`utils.images.to_tensor` gives)."""
    return img.astype(np.float32) / 127.5 - 1.0


def crop_zoom(img: np.ndarray, top: int, left: int, side: int) -> np.ndarray:
    """The ``side`` x ``side`` square of ``img`` at (``top``, ``left``) resized (bilinearly) to the image's size."""
    h, w = img.shape[:2]
    return cv2.resize(img[top:top + side, left:left + side], (w, h), interpolation=cv2.INTER_LINEAR)


def random_square(rng: np.random.Generator, h: int, w: int) -> tuple[int, int, int]:
    """(top, left, side) of a square of U(``REGION``) of the short side, placed uniformly inside the image."""
    side = max(1, int(round(rng.uniform(*REGION) * min(h, w))))
    return int(rng.integers(h - side + 1)), int(rng.integers(w - side + 1)), side


def shown(img: np.ndarray, where: np.ndarray | None = None) -> np.ndarray:
    """Colours (H, W, 3) in [-1, 1] -> a view (H, W, 4): with the 0/1 channel ``where`` (None: every pixel shown)."""
    alpha = np.ones(img.shape[:2], np.float32) if where is None else where.astype(np.float32)
    return np.concatenate([img, alpha[..., None]], axis=2)


def partial_view(img: np.ndarray, rng: np.random.Generator, fill: np.ndarray | None = None) -> np.ndarray:
    """The view (H, W, 4) of ``img`` with only a rectangle of U(``REGION``) of each side kept in place; elsewhere
    ``fill``, shown (None: 0, not shown)."""
    h, w = img.shape[:2]
    rh, rw = (max(1, int(round(rng.uniform(*REGION) * s))) for s in (h, w))
    top, left = int(rng.integers(h - rh + 1)), int(rng.integers(w - rw + 1))
    out = shown(np.zeros_like(img), np.zeros((h, w))) if fill is None else shown(fill)
    out[top:top + rh, left:left + rw] = shown(img[top:top + rh, left:left + rw])
    return out


@dataclass(frozen=True)
class ReferenceViews:
    """Up to ``most`` views of a training target, the first a TPS warp, the others' kinds drawn from ``kinds``
    (``most`` = 1: off, the single reference of :class:`data.dataset.TrainDataset` is drawn as before)."""

    most: int = 1
    kinds: tuple[str, ...] = KINDS

    def __post_init__(self) -> None:
        if isinstance(self.most, bool) or not isinstance(self.most, int) or self.most < 1:
            raise ValueError(f"references_max must be a whole number >= 1 (1: one reference), got {self.most!r}")
        if not self.kinds or not set(self.kinds) <= set(KINDS):
            raise ValueError(f"reference view kinds must be some of {', '.join(KINDS)}, got {self.kinds!r}")

    def draw(self, target: np.ndarray, rng: np.random.Generator, tps: TPSParams,
             other: Callable[[], np.ndarray] | None = None) -> list[np.ndarray]:
        """K ~ U{1..most} views (H, W, 4) of the uint8 ``target`` (module docstring); ``other`` loads another
        training image (uint8) for partial views (None: always blank)."""
        image = signed(target)
        views = [shown(tps.apply(image, rng))]  # the first: the single-reference training's reference
        for _ in range(int(rng.integers(1, self.most + 1)) - 1):
            kind = self.kinds[int(rng.integers(len(self.kinds)))]
            if kind == "tps":
                views.append(shown(tps.apply(image, rng)))
            elif kind == "mirror":
                views.append(shown(np.ascontiguousarray(image[:, ::-1])))
            elif kind == "crop":
                views.append(shown(tps.apply(crop_zoom(image, *random_square(rng, *image.shape[:2])), rng)))
            else:
                fill = signed(other()) if other is not None and rng.random() < 0.5 else None
                view = tps.apply(partial_view(image, rng, fill), rng)
                view[..., 3] = view[..., 3] > 0.5  # the warp's bilinear edge: a pixel is shown or not,
                view[..., :3] *= view[..., 3:]  # and a hidden one blank
                views.append(view)
        return views
