"""The evaluation protocol: same-reference and cross-reference test pairs, reproducible bit-for-bit.

Given a test folder and a seed, every image (identified by its name: path relative to the folder, no extension) gets

- a sketch: XDoG with the blur sigma drawn from the image's own seed;
- a same-reference R: a TPS warp of the image itself, the warp drawn from the image's own seed;
- a cross-reference R: another test image, chosen by a fixed, seeded derangement of the sorted test set
  (:func:`cross_reference_permutation`: a uniformly random permutation without fixed points, so no image is ever
  paired with itself);
- a recolouring pair, a cross-reference setting whose answer is known: the same-reference R and the image itself with
  their CIELAB hues turned together by one angle drawn from the image's seed (at least a quarter turn, so the colours
  are not the data set's usual ones), R also mirrored so that it does not line up with the sketch. The sketch is
  unchanged, so the turned image is the right output: a model scores there by reading the colours off a reference it
  must match by content, and neither ignoring the reference (the original colours) nor pasting it in place can win
  (:func:`recolour_pair`);
- a multi-reference item (opt-in, :func:`multi_item`), the recolouring idea with several references that each hold
  only part of the colours: K = 3 partial views of the image, each a TPS warp of it showing one band (the top with
  the hair, the middle with the eyes and skin, the bottom with the clothes; overlapping, edges placed with seeded
  jitter, :func:`multi_regions`) and transparent elsewhere (mid-grey under an alpha of 0: no part of the
  reference, as a panel cut from a character sheet), mirrored so that nothing lines up with the sketch, all
  hue-turned with the answer by one angle drawn from the image's seed (:func:`multi_angle`). A model scores by
  gathering each part's colours from the reference that shows it; no single reference holds them all.

The image's own seed (:func:`image_seed`) is a SHA-256 hash of (seed, name), so it does not depend on Python's hash
randomisation, on the order of the files or on which other files are present. ``data.prepare`` writes exactly these
arrays to disk and the validation/test datasets of ``data.datamodule`` yield them.
"""
from __future__ import annotations

import hashlib

import numpy as np

from utils.chroma import rotate_chroma
from utils.errors import UserError
from utils.eval_layout import MULTI_COUNT
from utils.xdog import XDoGParams

from .tps import TPSParams

# Independent random streams drawn from one image seed (numpy SeedSequence entropy words).
_SKETCH_STREAM = 1
_REFERENCE_STREAM = 2
_RECOLOUR_STREAM = 3
_MULTI_STREAM = 4  # the multi-reference hue turn
_MULTI_REGION_STREAM = 5  # its bands
_MULTI_WARP_STREAM = 6  # their warps

#: The multi-reference bands, (top, bottom) as fractions of the height: the top (hair), the middle (eyes, skin), the
#: bottom (neck, clothes), overlapping; each edge inside the image moves by up to MULTI_JITTER of the height.
MULTI_BANDS, MULTI_JITTER = ((0.0, 0.45), (0.3, 0.7), (0.55, 1.0)), 0.05
#: The colour of a reference outside its band, where its alpha is 0: mid-grey, the blank of a training partial view.
MULTI_BLANK = 128


def image_seed(name: str, seed: int) -> int:
    """A 63-bit seed that depends only on ``seed`` and the image ``name``."""
    digest = hashlib.sha256(f"{seed}\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "little") >> 1


def _rng(seed_for_name: int, stream: int) -> np.random.Generator:
    return np.random.default_rng([seed_for_name, stream])


def eval_sketch(rgb: np.ndarray, seed_for_name: int, xdog: XDoGParams = XDoGParams()) -> np.ndarray:
    """The test sketch of ``rgb`` (uint8 (H, W)): XDoG with the sigma drawn from the image's seed."""
    return xdog.apply(rgb, _rng(seed_for_name, _SKETCH_STREAM))


def same_reference(rgb: np.ndarray, seed_for_name: int, tps: TPSParams = TPSParams()) -> np.ndarray:
    """The same-reference of ``rgb``: a TPS warp of the image itself drawn from the image's seed."""
    return tps.apply(rgb, _rng(seed_for_name, _REFERENCE_STREAM))


def recolour_angle(seed_for_name: int) -> float:
    """The recolouring hue turn of an image: uniform in [pi/2, 3pi/2] radians, drawn from the image's seed."""
    return float(_rng(seed_for_name, _RECOLOUR_STREAM).uniform(np.pi / 2, 3 * np.pi / 2))


def recolour_pair(target: np.ndarray, reference: np.ndarray, angle: float,
                  mirror: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """The recolouring item of ``target`` and its same-``reference`` (uint8 (H, W, 3)): both with their hues turned
    by ``angle`` (:func:`utils.chroma.rotate_chroma`), the reference mirrored left-right when ``mirror``.
    Returns (turned target: the right output, turned reference: the model's input)."""
    turned = rotate_chroma(reference, angle)
    return rotate_chroma(target, angle), np.ascontiguousarray(turned[:, ::-1]) if mirror else turned


def multi_angle(seed_for_name: int) -> float:
    """The multi-reference hue turn of an image: uniform in [pi/2, 3pi/2] radians, from its own stream."""
    return float(_rng(seed_for_name, _MULTI_STREAM).uniform(np.pi / 2, 3 * np.pi / 2))


def multi_regions(height: int, width: int, seed_for_name: int) -> list[tuple[int, int]]:
    """(top, bottom) rows of the MULTI_COUNT bands of an image (:data:`MULTI_BANDS`), their inner edges moved by a
    seeded jitter; the first starts at row 0, the last ends at the bottom, neighbours overlap. ``width`` is unused
    (bands span the image)."""
    rng = _rng(seed_for_name, _MULTI_REGION_STREAM)
    bands = []
    for top, bottom in MULTI_BANDS[:MULTI_COUNT]:
        top += rng.uniform(-MULTI_JITTER, MULTI_JITTER) if top > 0 else 0.0
        bottom += rng.uniform(-MULTI_JITTER, MULTI_JITTER) if bottom < 1 else 0.0
        bands.append((int(round(top * height)), int(round(bottom * height))))
    return bands


def multi_item(target: np.ndarray, seed_for_name: int, tps: TPSParams = TPSParams()
               ) -> tuple[np.ndarray, list[np.ndarray]]:
    """The multi-reference item of ``target`` (uint8 (H, W, 3)): (the answer: ``target`` hue-turned by
    :func:`multi_angle`, its references, uint8 (H, W, 4): for each :func:`multi_regions` band, a TPS warp of the
    image (from the image's own warp stream) showing only that band, the rest transparent mid-grey, mirrored and
    turned by the same angle)."""
    rng, angle = _rng(seed_for_name, _MULTI_WARP_STREAM), multi_angle(seed_for_name)
    references = []
    for top, bottom in multi_regions(*target.shape[:2], seed_for_name):
        view = np.full_like(target, MULTI_BLANK)
        alpha = np.zeros(target.shape[:2], np.uint8)
        view[top:bottom], alpha[top:bottom] = tps.apply(target, rng)[top:bottom], 255
        turned = rotate_chroma(np.ascontiguousarray(view[:, ::-1]), angle)
        references.append(np.concatenate([turned, alpha[:, ::-1, None]], axis=2))
    return rotate_chroma(target, angle), references


def cross_reference_permutation(n: int, seed: int) -> list[int]:
    """A seeded derangement of range(n): image i takes image perm[i] as its cross-reference, perm[i] != i.

    Uniform over derangements (rejection sampling of uniform permutations; about e draws on average).
    """
    if n < 2:
        raise UserError(f"the cross-reference setting needs at least 2 test images, found {n}; add more images")
    rng = np.random.default_rng([seed, n])
    identity = np.arange(n)
    while True:
        perm = rng.permutation(n)
        if not np.any(perm == identity):
            return perm.tolist()
