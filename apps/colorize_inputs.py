"""The inputs and pictures of colorize: sketch detection, letterboxing, reference preparation, trajectory grids.

An input counts as a sketch by :func:`looks_like_sketch`; anything else is turned into one with the checkpoint's
XDoG (:func:`prepare_sketch`). Sketches are letterboxed on white to the processing size and the output is mapped
back to the sketch's own size (:class:`Letterbox`); references are resized and centre-cropped as in training.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
import torchvision
from PIL import Image

from utils.errors import UserError
from utils.images import load_rgb, load_rgba, quantize, resize_center_crop, shown_pixels, to_unit
from utils.xdog import XDoGParams

#: Sketch detection (:func:`looks_like_sketch`): a pixel is coloured when max(R, G, B) - min(R, G, B) exceeds
#: CHROMA_LEVEL, white when mean(R, G, B) >= WHITE_LEVEL, mid-grey when BLACK_LEVEL < mean(R, G, B) < WHITE_LEVEL.
CHROMA_LEVEL = 24
WHITE_LEVEL = 200
BLACK_LEVEL = 55
MAX_COLOURED = 0.02  # near-grayscale: at most this fraction of coloured pixels
MIN_WHITE = 0.5  # mostly white: at least this fraction of white pixels
MAX_MIDTONE = 0.15  # line art: at most this fraction of mid-grey pixels...
MAX_MIDTONE_DENSE = 0.05  # ...and at most this one when less than MIN_WHITE of the pixels are white


# -- image preparation ---------------------------------------------------------------------------------------------


def looks_like_sketch(rgb: np.ndarray) -> bool:
    """The sketch detection rule: near-grayscale (at most 2 % of the pixels have max(R,G,B) - min(R,G,B) > 24),
    mostly white (at least half the pixels have mean(R,G,B) >= 200) and line art (at most 15 % mid-grey pixels,
    55 < mean(R,G,B) < 200). A black-and-white image with less white (dense line art at small sizes: at most 5 %
    mid-grey) also counts as a sketch.

    Measured on the shared anime faces (128 px): their XDoG sketches are 72-90 % white with no mid-grey (dense 16 px
    sketches of the procedural faces can be 45 % white); the colour faces have >= 27 % coloured pixels; their
    grayscale versions have >= 18 % mid-grey pixels, so they are converted. Converting costs little when in doubt:
    XDoG leaves its own sketches unchanged, and turns soft or grey lines into the black lines the model was
    trained on."""
    if rgb.ndim == 2:
        coloured = 0.0
        level = rgb.astype(np.float32)
    else:
        chroma = rgb.max(axis=2).astype(np.int16) - rgb.min(axis=2).astype(np.int16)
        coloured = float((chroma > CHROMA_LEVEL).mean())
        level = rgb.astype(np.float32).mean(axis=2)
    white = float((level >= WHITE_LEVEL).mean())
    midtone = float(((level > BLACK_LEVEL) & (level < WHITE_LEVEL)).mean())
    if coloured > MAX_COLOURED or midtone > MAX_MIDTONE:
        return False
    return white >= MIN_WHITE or midtone <= MAX_MIDTONE_DENSE


def _resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    h, w = img.shape[:2]
    if (h, w) == (height, width):
        return img
    interp = cv2.INTER_AREA if width * height < w * h else cv2.INTER_CUBIC
    return cv2.resize(img, (width, height), interpolation=interp)


@dataclass(frozen=True)
class Letterbox:
    """An (height, width) image centred on a square of side max(height, width), which is resized to ``size``."""

    height: int
    width: int
    size: int

    @property
    def side(self) -> int:
        return max(self.height, self.width)

    @property
    def offset(self) -> tuple[int, int]:
        return (self.side - self.height) // 2, (self.side - self.width) // 2

    def forward(self, img: np.ndarray, border: str) -> np.ndarray:
        """Pad (``border``: "white" or "replicate") to the square and resize it to ``size``."""
        top, left = self.offset
        bottom, right = self.side - self.height - top, self.side - self.width - left
        if top or bottom or left or right:
            if border == "white":
                img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(255, 255, 255))
            else:
                img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_REPLICATE)
        return _resize(img, self.size, self.size)

    def inverse(self, img: np.ndarray) -> np.ndarray:
        """A (size, size[, C]) uint8 result back to (height, width[, C]): resize to the square, cut the padding."""
        if self.side == self.size:
            square = img
        else:
            square = np.clip(_resize(img.astype(np.float32), self.side, self.side) + 0.5, 0, 255).astype(np.uint8)
        top, left = self.offset
        return np.ascontiguousarray(square[top : top + self.height, left : left + self.width])


@dataclass(frozen=True)
class PreparedSketch:
    sketch: np.ndarray  # uint8 (size, size)
    letterbox: Letterbox
    converted: bool  # the file was a colour image turned into a sketch with XDoG


def prepare_sketch(image: Path | np.ndarray, size: int, xdog_params: XDoGParams, sketch_type: str = "auto"
                   ) -> PreparedSketch:
    """The model-size sketch of a file or an RGB uint8 array; a colour image (``sketch_type`` "image", or "auto" and
    :func:`looks_like_sketch` false) is resized first and then turned into a sketch with XDoG at the model size, as
    the training sketches were made."""
    rgb = image if isinstance(image, np.ndarray) else load_rgb(image)
    box = Letterbox(rgb.shape[0], rgb.shape[1], size)
    convert = sketch_type == "image" or (sketch_type == "auto" and not looks_like_sketch(rgb))
    if convert:
        sigma = float(np.median(xdog_params.sigmas))
        image = box.forward(rgb, border="replicate")
        sketch = xdog_params.extract(image, sigma)
    else:
        gray = np.array(Image.fromarray(rgb).convert("L"), dtype=np.uint8)
        sketch = box.forward(gray, border="white")
    return PreparedSketch(sketch, box, convert)


def prepare_reference(image: Path | np.ndarray, size: int) -> np.ndarray:
    """The reference (a file or an RGB uint8 array) as the model saw references in training: short side resized to
    ``size``, centre square."""
    return resize_center_crop(image if isinstance(image, np.ndarray) else load_rgb(image), size)


def prepare_hints(path: Path, box: Letterbox) -> torch.Tensor:
    """Colour hints [4, size, size] (:mod:`data.hints`: RGB where the mask is 1, then the mask) from an RGBA file of
    the sketch's own size whose opaque pixels (alpha >= 128) are the hints, letterboxed like the sketch with
    transparent padding. Resizing keeps every stroke: a model-size pixel is a hint
    when it covers any opaque pixel, of their mean colour (alpha-weighted area resampling)."""
    rgba = load_rgba(path)
    if rgba.shape[:2] != (box.height, box.width):
        raise UserError(f"--hints {path} is {rgba.shape[1]}x{rgba.shape[0]} px but its sketch is "
                        f"{box.width}x{box.height}; draw the hints on a layer of the sketch's size")
    alpha = shown_pixels(rgba).astype(np.float32)
    top, left = box.offset
    pad = ((top, box.side - box.height - top), (left, box.side - box.width - left), (0, 0))
    weighted = np.pad(np.concatenate([rgba[..., :3] * alpha, alpha], axis=2), pad)
    small = cv2.resize(weighted, (box.size, box.size), interpolation=cv2.INTER_AREA) if box.side != box.size \
        else weighted
    cover = small[..., 3:]
    rgb = np.where(cover > 0, small[..., :3] / np.maximum(cover, 1e-8), 0)
    mask = (cover > 0).astype(np.float32)
    out = np.concatenate([(rgb / 127.5 - 1) * mask, mask], axis=2)
    return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1))).float()


def hints_file(hints: Path | None, name: str) -> Path | None:
    """The hint file of the sketch ``name``: ``hints`` itself when it is a file, ``hints/<name>.png`` when it is a
    folder (None when absent: that sketch is colorized without hints)."""
    if hints is None or hints.is_file():
        return hints
    candidate = hints / f"{name}.png"
    return candidate if candidate.is_file() else None


# -- trajectory ----------------------------------------------------------------------------------------------------


def trajectory_steps(steps: int, frames: int) -> list[int]:
    """Indices of the sampler steps shown in a trajectory grid: ``frames`` evenly spaced ones, the last included
    (0 or >= steps: all)."""
    if frames <= 0 or frames >= steps:
        return list(range(steps))
    return sorted({round(i * (steps - 1) / (frames - 1)) for i in range(frames)}) if frames > 1 else [steps - 1]


class TrajectoryRecorder:
    """Sampler callback keeping, at the chosen steps, the state x_i (scaled by 1/sqrt(1 + sigma^2) so that the
    noisy early states stay visible) and the x0 prediction D(x_i; sigma_i), on the CPU."""

    def __init__(self, keep: list[int]):
        self.keep = set(keep)
        self.states: list[torch.Tensor] = []
        self.predictions: list[torch.Tensor] = []

    def __call__(self, i: int, x: torch.Tensor, denoised: torch.Tensor, sigma: torch.Tensor) -> None:
        if i in self.keep:
            self.states.append((x / math.sqrt(1.0 + float(sigma) ** 2)).float().cpu())
            self.predictions.append(denoised.float().cpu())


def show_hints(sketch: torch.Tensor, hints: torch.Tensor | None) -> torch.Tensor:
    """The sketch [..., 1, H, W] in [-1, 1] with the hint patches ([..., 4, H, W]) painted over it, 3 channels."""
    rgb = sketch.expand(*sketch.shape[:-3], 3, *sketch.shape[-2:])
    if hints is None:
        return rgb
    mask = hints[..., 3:, :, :]
    return rgb * (1 - mask) + hints[..., :3, :, :] * mask


def trajectory_grid(sketch: torch.Tensor, reference: torch.Tensor, states: list[torch.Tensor],
                    predictions: list[torch.Tensor]) -> np.ndarray:
    """One image's denoising trajectory as a uint8 (H, W, 3) grid of two rows: the sketch, then the sampler's states
    x_i from pure noise on; the reference, then the x0 predictions at the same steps (the last is the output). The
    sketch may be 3 channels (with colour hints painted on it, :func:`show_hints`). Several references [K, 3, H, W]:
    the first under the sketch, the others in a third row."""
    references = reference if reference.dim() == 4 else reference[None]
    top = [sketch.expand(3, -1, -1), *states]
    rows = [top, [references[0], *predictions]]
    if len(references) > 1:  # the others in a third row, filled up with white tiles
        others = list(references[1:len(top) + 1])
        rows.append(others + [torch.ones_like(references[0])] * (len(top) - len(others)))
    tiles = torch.stack([to_unit(t) for row in rows for t in row])
    grid = torchvision.utils.make_grid(tiles, nrow=len(top), padding=2, pad_value=1.0)
    return quantize(grid * 2 - 1).permute(1, 2, 0).numpy()
