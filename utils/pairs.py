"""Pairing generated images with their ground truth by file name, and reading the pairs in batches.

A pair is matched by the path relative to its folder without the extension (``a/0001.png`` pairs with
``a/0001.jpg``), as ``utils.images.image_names`` defines it. Missing, extra or ambiguous names and size mismatches are
:class:`UserError` s that name the offending files on one line, found before any metric is computed.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image

from .errors import UserError, listing
from .images import image_names, image_size, list_images, load_rgb



@dataclass(frozen=True)
class Pair:
    name: str
    real: Path
    fake: Path


def _by_name(folder: Path) -> dict[str, Path]:
    files = list_images(folder)
    names = image_names(files, folder)
    duplicated = sorted(name for name, count in Counter(names).items() if count > 1)
    if duplicated:
        raise UserError(
            f"{folder} holds several images with the same name but different extensions ({listing(duplicated)}); "
            "keep one file per name"
        )
    return dict(zip(names, files))


def match_pairs(real_dir: str | Path, fake_dir: str | Path) -> list[Pair]:
    """Pairs of ``real_dir`` and ``fake_dir`` images with the same name, sorted by name; every name must match."""
    real_dir, fake_dir = Path(real_dir), Path(fake_dir)
    real, fake = _by_name(real_dir), _by_name(fake_dir)
    missing = sorted(set(real) - set(fake))
    extra = sorted(set(fake) - set(real))
    if missing or extra:
        parts = []
        if missing:
            parts.append(
                f"{len(missing)} real image(s) have no generated counterpart in {fake_dir}: {listing(missing)}"
            )
        if extra:
            parts.append(f"{len(extra)} generated image(s) have no real counterpart in {real_dir}: {listing(extra)}")
        raise UserError("; ".join(parts) + " (images are paired by file name without extension)")
    return [Pair(name, real[name], fake[name]) for name in sorted(real)]


def count_size_mismatches(pairs: list[Pair], resize: bool) -> int:
    """Number of pairs whose images differ in size; an error listing them unless ``resize`` allows it."""
    mismatched = []
    for pair in pairs:
        real_size, fake_size = image_size(pair.real), image_size(pair.fake)
        if real_size != fake_size:
            mismatched.append(f"{pair.name} (real {real_size[0]}x{real_size[1]}, fake {fake_size[0]}x{fake_size[1]})")
    if mismatched and not resize:
        raise UserError(
            f"{len(mismatched)} pair(s) differ in size: {listing(mismatched)}; "
            "pass --resize to resize generated images to the real image size (bicubic)"
        )
    return len(mismatched)


def check_min_size(pairs: list[Pair], min_side: int, why: str) -> None:
    """An error listing the real images smaller than ``min_side`` px on a side (``why`` says what needs it)."""
    small = []
    for pair in pairs:
        width, height = image_size(pair.real)
        if min(width, height) < min_side:
            small.append(f"{pair.name} ({width}x{height})")
    if small:
        raise UserError(f"{len(small)} image(s) are smaller than {min_side} px on a side, which {why}: "
                        f"{listing(small)}; evaluate larger images (upscale both folders alike if you must)")


def _load_resized(path: Path, size: tuple[int, int]) -> np.ndarray:
    img = load_rgb(path)
    if (img.shape[1], img.shape[0]) == size:
        return img
    return np.asarray(Image.fromarray(img).resize(size, Image.Resampling.BICUBIC))


def _stack(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()


def iter_pair_batches(pairs: list[Pair], batch_size: int) -> Iterator[tuple[list[str], torch.Tensor, torch.Tensor]]:
    """Yield (names, real, fake) with uint8 tensors (B, 3, H, W); generated images are brought to the real size.

    A batch holds consecutive pairs of one size, so folders of mixed sizes work (with smaller batches).
    """
    names: list[str] = []
    real: list[np.ndarray] = []
    fake: list[np.ndarray] = []
    for pair in pairs:
        real_img = load_rgb(pair.real)
        if real and (real_img.shape != real[0].shape or len(real) == batch_size):
            yield names, _stack(real), _stack(fake)
            names, real, fake = [], [], []
        names.append(pair.name)
        real.append(real_img)
        fake.append(_load_resized(pair.fake, (real_img.shape[1], real_img.shape[0])))
    if real:
        yield names, _stack(real), _stack(fake)
