"""Folders of images: named entries, bad-file screening and pairing by name.

An image is identified by its *name*: the path relative to its folder without the extension (``a/b.png`` -> ``a/b``),
which is how sketches, references and outputs are paired across folders. Unreadable files are reported on stderr with
one ``warning:`` line each and skipped with a count; problems that make the whole folder unusable (missing, empty,
two files with one name, sketches missing for some images) raise :class:`utils.errors.UserError`.
"""
from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from utils.errors import UserError, listing
from utils.images import ImageReadError, image_names, image_size, list_images, load_gray, load_rgb, resize_center_crop

#: How many names an error message lists before saying "and N more".


@dataclass(frozen=True)
class ImageEntry:
    name: str
    path: Path


def warn(message: str) -> None:
    """One line on stderr, prefixed like :func:`utils.errors.exit_on_user_error` prefixes errors."""
    print(f"warning: {message}", file=sys.stderr, flush=True)


def scan_folder(root: str | Path) -> list[ImageEntry]:
    """Every image under ``root`` (recursive, sorted), named; raises if two files share a name (a.jpg, a.png)."""
    root = Path(root)
    paths = list_images(root)
    names = image_names(paths, root)
    seen: dict[str, Path] = {}
    clashes = []
    for name, path in zip(names, paths):
        if name in seen:
            clashes.append(f"{seen[name].name} / {path.name}")
        seen[name] = path
    if clashes:
        raise UserError(
            f"{root}: several files share a name once the extension is dropped ({listing(clashes)}); "
            "rename or remove one of each"
        )
    return [ImageEntry(n, p) for n, p in zip(names, paths)]


def _problem(path: Path, decode: bool) -> str | None:
    """Why ``path`` cannot be used as an image, or None. Without ``decode`` only the header is read (fast)."""
    if decode:
        try:
            load_rgb(path)
        except ImageReadError as err:
            return str(err)
        return None
    try:
        image_size(path)
    except ImageReadError as err:
        return str(err)
    return None


def readable(entries: list[ImageEntry], decode: bool, what: str = "images") -> list[ImageEntry]:
    """The entries whose files open as images; each bad one gets a warning line, then a count. Raises if none is left.

    ``decode=False`` checks headers only (cheap enough for large training folders: a truncated file is then caught
    when it is loaded); ``decode=True`` decodes every file (evaluation sets, whose content must be exact).
    """
    good = []
    for entry in entries:
        problem = _problem(entry.path, decode)
        if problem is None:
            good.append(entry)
        else:
            warn(f"{problem} (skipped)")
    skipped = len(entries) - len(good)
    if skipped:
        warn(f"skipped {skipped} unreadable file(s) of {len(entries)} {what}")
    if not good:
        raise UserError(f"none of the {len(entries)} {what} could be read (see the warnings above); replace the files")
    return good


def pair_by_name(entries: list[ImageEntry], folder: str | Path, what: str = "sketch") -> dict[str, Path]:
    """For each entry, the file of the same name in ``folder``; raises naming the missing ones, warns on extras."""
    others = {e.name: e.path for e in scan_folder(folder)}
    missing = [e.name for e in entries if e.name not in others]
    if missing:
        raise UserError(
            f"{what} folder {folder} has no file for {len(missing)} of {len(entries)} images ({listing(missing)}); "
            "files are paired with images by their path without extension"
        )
    wanted = {e.name for e in entries}
    extra = sorted(set(others) - wanted)
    if extra:
        warn(f"{what} folder {folder}: {len(extra)} file(s) match no image and are ignored ({listing(extra)})")
    return {name: others[name] for name in wanted}


def load_square(path: Path, size: int) -> np.ndarray:
    """An RGB image file as uint8 (size, size, 3): short side resized to ``size``, centre crop."""
    return resize_center_crop(load_rgb(path), size)


def load_square_gray(path: Path, size: int) -> np.ndarray:
    """A grayscale (sketch) file as uint8 (size, size), resized and cropped like :func:`load_square`."""
    return resize_center_crop(load_gray(path), size)
