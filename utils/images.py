"""Reading, converting and writing images.

Every reader returns RGB ``uint8`` (H, W, 3) or grayscale ``uint8`` (H, W) arrays, whatever the file stores:
RGBA is composited on white, palette and CMYK images are converted, 16-bit images are scaled to 8 bits.
Tensors used by the models are float in [-1, 1], shape (C, H, W) or (B, C, H, W).
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import numpy as np
import torch
import torchvision
from PIL import Image, ImageFile, UnidentifiedImageError

from .errors import UserError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
ImageFile.LOAD_TRUNCATED_IMAGES = False  # a truncated file is an error, not a half-grey picture


class ImageReadError(UserError):
    """A file that should be an image could not be decoded."""


def list_images(folder: str | Path, recursive: bool = True) -> list[Path]:
    """Image files under ``folder`` (sorted, by extension), or a :class:`UserError` if the folder is missing/empty."""
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"image folder {folder} does not exist; pass an existing folder of .jpg/.png/.webp/.bmp files")
    pattern = "**/*" if recursive else "*"
    files = sorted(p for p in folder.glob(pattern) if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
    if not files:
        raise UserError(f"image folder {folder} contains no images (looked for {', '.join(IMAGE_EXTENSIONS)})")
    return files


def _to_8bit(img: Image.Image) -> Image.Image:
    """Scale 16/32-bit integer and float single-channel modes to 8-bit 'L'."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        maxval = 65535.0 if img.mode != "I" or arr.max() > 255 else 255.0
        return Image.fromarray(np.clip(arr / maxval * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        scale = 255.0 if arr.max() <= 1.0 else 1.0
        return Image.fromarray(np.clip(arr * scale + 0.5, 0, 255).astype(np.uint8), "L")
    return img


#: What Pillow raises for a file it cannot decode (a decompression bomb is an image too large to decode safely).
_DECODE_ERRORS = (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError)


def _unreadable(path: Path, err: Exception) -> ImageReadError:
    if isinstance(err, Image.DecompressionBombError):
        return ImageReadError(f"{path}: image too large to decode ({err}); downscale it first")
    return ImageReadError(f"{path}: not a readable image ({err}); delete or replace the file")


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) from the file header, without decoding the pixels; :class:`ImageReadError` otherwise."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageReadError(f"{path}: empty file (0 bytes); delete or replace the file")
        with Image.open(path) as img:
            return img.size
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except _DECODE_ERRORS as err:
        raise _unreadable(path, err) from None


def _open(path: str | Path) -> Image.Image:
    path = Path(path)
    try:
        img = Image.open(path)
        img.load()
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found") from None
    except _DECODE_ERRORS as err:
        raise _unreadable(path, err) from None
    return _to_8bit(img)


def load_rgb(path: str | Path) -> np.ndarray:
    """Load any image file as RGB uint8 (H, W, 3); transparency is composited on white."""
    img = _open(path)
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        img = img.convert("RGBA")
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, img)
    return np.asarray(img.convert("RGB"), dtype=np.uint8).copy()


def load_rgba(path: str | Path) -> np.ndarray:
    """Load an image file with transparency as RGBA uint8 (H, W, 4); a file without an alpha channel is an
    :class:`ImageReadError` (every pixel would count as opaque)."""
    img = _open(path)
    if not (img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info)):
        raise ImageReadError(f"{path}: has no transparency (mode {img.mode}); save it as a PNG whose only opaque "
                             "pixels are the hints")
    return np.asarray(img.convert("RGBA"), dtype=np.uint8).copy()


#: The least alpha of a shown pixel, for every file whose transparency means something (hints, references).
OPAQUE = 128


def shown_pixels(rgba: np.ndarray) -> np.ndarray:
    """Which pixels of an RGBA uint8 array (H, W, 4) are shown: alpha >= :data:`OPAQUE`, (H, W, 1) bool."""
    return rgba[..., 3:] >= OPAQUE


def load_with_alpha(path: str | Path) -> np.ndarray:
    """Any image file as RGBA uint8 (H, W, 4): its own transparency, or opaque everywhere for a file without."""
    return np.asarray(_open(path).convert("RGBA"), dtype=np.uint8).copy()


def load_gray(path: str | Path) -> np.ndarray:
    """Load any image file as grayscale uint8 (H, W) (ITU-R 601 luma, as PIL's 'L' mode)."""
    rgb = load_rgb(path)
    return np.asarray(Image.fromarray(rgb).convert("L"), dtype=np.uint8).copy()


def to_tensor(img: np.ndarray) -> torch.Tensor:
    """uint8 (H, W[, C]) -> float tensor (C, H, W) in [-1, 1]."""
    arr = torch.from_numpy(np.ascontiguousarray(img)).float()
    if arr.ndim == 2:
        arr = arr[None]
    else:
        arr = arr.permute(2, 0, 1)
    return arr / 127.5 - 1.0


def to_unit(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float tensor -> [0, 1] float32 (clipped), any shape, on the CPU."""
    return ((x.detach().float().cpu() + 1) / 2).clamp(0, 1)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float tensor -> uint8 tensor of the values a PNG stores (rounded, clipped), any shape, on the CPU."""
    return (to_unit(x) * 255).round().to(torch.uint8)


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """Float tensor (C, H, W) in [-1, 1] -> uint8 (H, W, C), or (H, W) for one channel. Values are clipped."""
    arr = quantize(x).permute(1, 2, 0).numpy()
    return arr[..., 0] if arr.shape[2] == 1 else arr


def save_image(x: torch.Tensor | np.ndarray, path: str | Path) -> None:
    """Save a [-1, 1] tensor (C, H, W) or a uint8 array as PNG (or by the file's extension)."""
    arr = to_uint8(x) if isinstance(x, torch.Tensor) else x
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def resize_center_crop(img: np.ndarray, size: int) -> np.ndarray:
    """Resize the short side to ``size`` (area interpolation when shrinking) and crop the centre square."""
    import cv2

    h, w = img.shape[:2]
    scale = size / min(h, w)
    if scale != 1.0:
        nh, nw = max(size, round(h * scale)), max(size, round(w * scale))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        img = cv2.resize(img, (nw, nh), interpolation=interp)
        h, w = nh, nw
    top, left = (h - size) // 2, (w - size) // 2
    return np.ascontiguousarray(img[top : top + size, left : left + size])


def image_names(paths: Iterable[Path], root: Path) -> list[str]:
    """Names relative to ``root`` with the extension removed (used to pair files across folders)."""
    return [str(p.relative_to(root).with_suffix("")) for p in paths]


def image_grid(sketch, reference, output, target, max_rows: int = 8) -> torch.Tensor:
    """A [3, H, W] grid in [0, 1] whose rows are sketch | reference | output | target."""
    n = min(max_rows, output.shape[0])
    cols = [sketch[:n].expand(-1, 3, -1, -1), reference[:n], output[:n], target[:n]]
    tiles = torch.stack([to_unit(c) for c in cols], dim=1).flatten(0, 1)
    return torchvision.utils.make_grid(tiles, nrow=4, padding=2, pad_value=1.0)
