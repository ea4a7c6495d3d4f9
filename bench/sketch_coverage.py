"""How much of an image's structure its XDoG sketch keeps: the edge coverage of the sketch extraction over a folder.

Coverage of one image = the share of its strong edges that lie within 1 px of a sketch line. Strong edges are the
pixels whose luminance gradient (Sobel, on [0, 1] luma) is in the image's top 10 % and at least 0.1, so a pale
image's edges count as much as a contrasty one's. A sketch line is a pixel below mid-grey. The figure is printed
per contrast mode (the paper's XDoG, ``none``, against the default ``stretch``), with the worst images' sketches
on a contact sheet (rows: image | sketch per mode). ``--pale F`` keeps a fraction F of each image's contrast
(blended towards white), a stand-in for pale, low-contrast art.

    python bench/sketch_coverage.py --images ../shared/data/anime_faces_128/train --count 500 --size 64 \\
        --pale 0.35 --sheet docs/experiments/figures/sketch_coverage_pale64.png
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from data.folder import load_square, readable, scan_folder  # noqa: E402
from utils.images import save_image  # noqa: E402
from utils.xdog import CONTRAST_MODES, XDoGParams, luminance  # noqa: E402

EDGE_QUANTILE = 0.9
EDGE_MIN = 0.1


def strong_edges(rgb: np.ndarray) -> np.ndarray:
    u = luminance(rgb)
    gx, gy = cv2.Sobel(u, cv2.CV_32F, 1, 0, ksize=3) / 8, cv2.Sobel(u, cv2.CV_32F, 0, 1, ksize=3) / 8
    mag = np.hypot(gx, gy)
    return mag >= max(EDGE_MIN, float(np.quantile(mag, EDGE_QUANTILE)))


def coverage(rgb: np.ndarray, sketch: np.ndarray) -> float:
    edges = strong_edges(rgb)
    if not edges.any():
        return float("nan")
    lines = cv2.dilate((sketch < 128).astype(np.uint8), np.ones((3, 3), np.uint8)) > 0
    return float((edges & lines).sum() / edges.sum())


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--images", type=Path, required=True)
    parser.add_argument("--count", type=int, default=500, help="first N images of the folder (default 500)")
    parser.add_argument("--size", type=int, default=128, help="side the images are resized to (default 128)")
    parser.add_argument("--sigma", type=float, default=0.4, help="XDoG blur sigma (default 0.4, the middle one)")
    parser.add_argument("--pale", type=float, default=1.0, metavar="F", help="keep only the fraction F of each "
                        "image's contrast, blended towards white (a stand-in for pale, low-contrast art; default 1)")
    parser.add_argument("--sheet", type=Path, help="contact sheet of the worst images (PNG)")
    parser.add_argument("--worst", type=int, default=8)
    args = parser.parse_args(argv)

    entries = readable(scan_folder(args.images), decode=False)[: args.count]
    images = [load_square(e.path, args.size) for e in entries]
    if args.pale != 1.0:
        images = [(255 - (255 - img.astype(np.float32)) * args.pale).round().astype(np.uint8) for img in images]
    sketches = {mode: [XDoGParams(contrast=mode).extract(img, args.sigma) for img in images]
                for mode in CONTRAST_MODES}
    scores = {mode: np.array([coverage(img, s) for img, s in zip(images, sk)]) for mode, sk in sketches.items()}
    pale = f", contrast x{args.pale:g} towards white" if args.pale != 1.0 else ""
    print(f"{args.images}: {len(images)} images at {args.size} px{pale}, XDoG sigma {args.sigma}")
    print(f"{'contrast':10s} {'mean':>7s} {'p10':>7s} {'worst':>7s} {'ink':>7s}  (coverage: share of strong edges "
          "within 1 px of a line; ink: share of line pixels)")
    for mode, s in scores.items():
        ink = np.mean([(sk < 128).mean() for sk in sketches[mode]])
        print(f"{mode:10s} {np.nanmean(s):7.3f} {np.nanquantile(s, 0.1):7.3f} {np.nanmin(s):7.3f} {ink:7.3f}")
    if args.sheet:
        order = np.argsort(np.nan_to_num(scores["none"], nan=1.0))[: args.worst]
        rows = [np.concatenate([images[i]] + [np.repeat(sketches[m][i][..., None], 3, 2) for m in CONTRAST_MODES], 1)
                for i in order]
        args.sheet.parent.mkdir(parents=True, exist_ok=True)
        save_image(np.concatenate(rows, 0), args.sheet)
        names = ", ".join(f"{entries[i].name} ({scores['none'][i]:.2f} -> {scores['stretch'][i]:.2f})" for i in order)
        print(f"worst {len(order)} for the paper's XDoG (coverage none -> stretch): {names}")
        print(f"wrote {args.sheet} (rows: image | {' | '.join(CONTRAST_MODES)})")


if __name__ == "__main__":
    main()
