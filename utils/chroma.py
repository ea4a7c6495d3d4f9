"""Rotation of an image's chroma in CIELAB: every colour's hue turns by the same angle, lightness and chroma stay.

Used by training (``data.colour_rotation``) to turn the target and its reference together, so that the colours of a
training pair are no longer those the data set makes likely (brown hair, pale skin): a model can then get them
right only by reading them off the reference. Lightness is what the sketch is drawn from, so sketch and target
still agree. Rotating (a*, b*) by theta is the hue shift h -> h + theta of CIELCh (the polar form of CIELAB);
colours that leave the sRGB gamut are clipped on the way back.
"""
from __future__ import annotations

import math

import cv2
import numpy as np


def rotate_chroma(image: np.ndarray, angle: float) -> np.ndarray:
    """The (H, W, 3) uint8 sRGB ``image`` with its CIELAB (a*, b*) turned by ``angle`` radians, as uint8 sRGB."""
    if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
        raise ValueError(f"rotate_chroma needs an (H, W, 3) uint8 image, got {image.shape} {image.dtype}")
    lab = cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)
    c, s = math.cos(angle), math.sin(angle)
    a, b = lab[..., 1].copy(), lab[..., 2].copy()
    lab[..., 1], lab[..., 2] = c * a - s * b, s * a + c * b
    rgb = cv2.cvtColor(lab, cv2.COLOR_Lab2RGB)
    return np.clip(np.rint(rgb * 255.0), 0, 255).astype(np.uint8)
