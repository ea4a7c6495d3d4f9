"""Throughput of the data pipeline on one CPU core: XDoG, TPS warp and a whole training item, at 128 and 256 px.

``python bench/data_pipeline.py [--images DIR] [--count 200] [--sizes 128 256]`` prints a table of samples/s and
ms/sample, from the CPU time of this single-threaded process (best of 3 passes), so that other jobs on the machine
do not inflate the figures. A training item is ``TrainDataset[i]``: JPEG decode, resize + centre crop, XDoG with a random sigma, a random
TPS warp and conversion of the three images to [-1, 1] tensors. Default images: the shared real anime faces in
``../shared/data/anime_faces_128/train`` (relative to the project root).
"""
from __future__ import annotations

import os

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # one core, set before numpy loads
    os.environ[_var] = "1"

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Callable  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from data.dataset import Pipeline, TrainDataset  # noqa: E402
from data.folder import load_square, scan_folder  # noqa: E402
from data.tps import TPSParams  # noqa: E402
from utils.xdog import XDoGParams  # noqa: E402
from utils.errors import UserError, exit_on_user_error  # noqa: E402

DEFAULT_IMAGES = ROOT.parent / "shared" / "data" / "anime_faces_128" / "train"
#: Time per image of one training step of the paper's 52M U-Net at 128 px on CPU (bf16), for comparison.
TRAIN_STEP_S_PER_IMAGE = 1 / 3


def rate(fn: Callable[[int], object], n: int, repeats: int = 3) -> float:
    """Best of ``repeats`` passes of fn(0..n-1): samples per CPU second."""
    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        for i in range(n):
            fn(i)
        best = min(best, time.process_time() - start)
    return n / best


def bench(folder: Path, count: int, sizes: list[int]) -> list[tuple[str, int, float]]:
    entries = scan_folder(folder)[:count]
    xdog, tps = XDoGParams(), TPSParams()
    rows = []
    for size in sizes:
        images = [load_square(e.path, size) for e in entries]
        rng = np.random.default_rng(0)
        rows.append(("XDoG sketch", size, rate(lambda i: xdog.apply(images[i], rng), len(images))))
        rows.append(("TPS warp", size, rate(lambda i: tps.apply(images[i], rng), len(images))))
        dataset = TrainDataset(entries, Pipeline(size, xdog, tps), seed=0)
        rows.append(("training item (decode+resize+XDoG+TPS+tensors)", size, rate(dataset.__getitem__, len(dataset))))
    return rows


@exit_on_user_error
def main() -> None:
    parser = argparse.ArgumentParser(description="Data-pipeline samples/s on one CPU core.")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES, help="folder of colour images "
                        "(default: the shared real anime faces)")
    parser.add_argument("--count", type=int, default=200, help="images per measurement (default 200)")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256], help="image sides (default 128 256)")
    args = parser.parse_args()
    if not args.images.is_dir():
        raise UserError(f"{args.images} not found; pass --images DIR with colour images (the shared real faces live "
                        "in ../shared/data/anime_faces_128 next to the project)")
    torch.set_num_threads(1)
    cv2.setNumThreads(1)
    rows = bench(args.images, args.count, args.sizes)
    print(f"data pipeline on one CPU core (CPU time), {min(args.count, len(scan_folder(args.images)))} images from "
          f"{args.images}")
    print(f"| {'stage':<48} | {'px':>4} | {'samples/s':>9} | {'ms/sample':>9} |")
    print(f"|{'-' * 50}|{'-' * 6}|{'-' * 11}|{'-' * 11}|")
    for name, size, r in rows:
        print(f"| {name:<48} | {size:>4} | {r:>9.1f} | {1000 / r:>9.2f} |")
    print(f"reference: one training step of the 52M U-Net at 128 px on CPU bf16 takes "
          f"~{TRAIN_STEP_S_PER_IMAGE * 1000:.0f} ms per image (~3 img/s)")


if __name__ == "__main__":
    main()
