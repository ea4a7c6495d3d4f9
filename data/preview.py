"""A contact sheet of the protocol, to check sketches and references by eye before training on a folder.

``python -m data.preview --images DIR --out FILE.png [--count 8] [--size 128] [--seed 0]`` draws one row per image
(the first ``--count`` of the folder): target | sketch | same-reference | cross-reference | recolouring reference |
recolouring target | the three multi-reference references | multi-reference target, exactly the arrays that
``data.prepare`` writes and the evaluation batches hold. The figures in
``assets/`` were made with

    python -m data.preview --images ../shared/data/anime_faces_128/test --out assets/data_real_grid.png
    python -m data.synthetic --out /tmp/demo_faces --count 16 --size 128
    python -m data.preview --images /tmp/demo_faces --out assets/data_demo_grid.png
"""
from __future__ import annotations

import argparse
from pathlib import Path

import cv2
import numpy as np

from utils.errors import UserError, exit_on_user_error
from utils.eval_layout import MULTI_REFERENCE_KEYS, MULTI_TRUTH
from utils.images import save_image

from .dataset import Pipeline, eval_arrays
from .folder import readable, scan_folder
from .protocol import cross_reference_permutation

COLUMNS = (("target", "target"), ("sketch", "sketch"), ("reference", "same-ref"), ("reference_cross", "cross-ref"),
           ("reference_recolour", "recolour-ref"), ("target_recolour", "recolour-gt"),
           *((key, f"multi-ref {k + 1}") for k, key in enumerate(MULTI_REFERENCE_KEYS)), (MULTI_TRUTH, "multi-gt"))
GAP = 2
HEADER = 20


def _rgb(img: np.ndarray) -> np.ndarray:
    """Grey, RGB or RGBA (transparent pixels drawn white, as on the page) -> RGB."""
    if img.ndim == 2:
        return np.repeat(img[..., None], 3, axis=2)
    if img.shape[2] == 4:
        return np.where(img[..., 3:] > 0, img[..., :3], np.uint8(255))
    return img


def protocol_grid(folder: Path, count: int = 8, size: int = 128, seed: int = 0) -> np.ndarray:
    """uint8 RGB sheet: a header of column names, then one row per image of the first ``count`` in ``folder``."""
    entries = readable(scan_folder(folder), decode=True, what=f"images in {folder}")
    cross = cross_reference_permutation(len(entries), seed)
    pipeline = Pipeline(size=size)
    rows = min(count, len(entries))
    width = len(COLUMNS) * size + (len(COLUMNS) + 1) * GAP
    sheet = np.full((HEADER + rows * (size + GAP) + GAP, width, 3), 255, np.uint8)
    for c, (_, label) in enumerate(COLUMNS):
        x = GAP + c * (size + GAP)
        cv2.putText(sheet, label, (x + 4, HEADER - 6), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    for r in range(rows):
        arrays = eval_arrays(entries[r], entries[cross[r]], pipeline, seed, multi=True)
        y = HEADER + r * (size + GAP)
        for c, (key, _) in enumerate(COLUMNS):
            x = GAP + c * (size + GAP)
            sheet[y : y + size, x : x + size] = _rgb(arrays[key])
    return sheet


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data.preview",
        description="Draw target | sketch | same-ref | cross-ref | recolour-ref | recolour-gt | multi-ref 1-3 | "
        "multi-gt rows for the first images of a folder (PNG).",
    )
    parser.add_argument("--images", required=True, type=Path, help="folder of colour images")
    parser.add_argument("--out", required=True, type=Path, help="PNG file to write")
    parser.add_argument("--count", type=int, default=8, help="number of rows (default 8)")
    parser.add_argument("--size", type=int, default=128, help="side of each tile in pixels (default 128)")
    parser.add_argument("--seed", type=int, default=0, help="protocol seed, as in data.prepare (default 0)")
    return parser


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.count < 1 or args.size < 8:
        raise UserError(f"need --count >= 1 and --size >= 8 (got {args.count}, {args.size})")
    save_image(protocol_grid(args.images, args.count, args.size, args.seed), args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
