"""Write the evaluation protocol of a folder of colour images to disk.

``python -m data.prepare --src DIR --out DIR [--size 256] [--seed 0] [--overwrite]`` writes, for every readable image
of ``--src`` (recursive), the same name as PNG in each of

    gt/               the image, short side resized to --size and centre-cropped
    sketch/           its XDoG sketch (sigma drawn from the image's seed)
    reference_same/   a TPS warp of the image (warp drawn from the image's seed)
    reference_cross/  another image of the folder (fixed seeded derangement: never the image itself)
    gt_recolour/      the image with its hues turned by an angle drawn from its seed (the recolouring answer)
    reference_recolour/  reference_same/ turned by the same angle and mirrored (the recolouring input)
    gt_multi/         the image with its hues turned by another angle drawn from its seed (the multi-reference answer)
    reference_multi0/, reference_multi1/, reference_multi2/
                      close-ups of the top, middle and bottom of the image, each warped, mirrored and turned by that
                      angle (the multi-reference inputs, :func:`data.protocol.multi_item`)

and ``pairs.csv`` (name, cross-reference name). The arrays are exactly those of the validation/test batches of
``ColorizationDataModule`` with the same folder, size and seed (the multi-reference ones with ``test_multi``; see
:mod:`data.protocol`); re-running with the same arguments writes byte-identical files. Unreadable images are
skipped with a warning and a count.
"""
from __future__ import annotations

import argparse
import csv
import shutil
from pathlib import Path

from tqdm import tqdm

from utils.errors import UserError, exit_on_user_error
from utils.eval_layout import INPUT_FOLDERS, MULTI_FOLDERS
from utils.outputs import check_output_folder
from utils.images import save_image

from .dataset import Pipeline, eval_arrays
from .folder import readable, scan_folder
from .protocol import cross_reference_permutation

PAIRS_FILE = "pairs.csv"
#: Batch key of every array written -> its sub-folder.
FOLDERS = {**INPUT_FOLDERS, **MULTI_FOLDERS}


def check_output(src: Path, out: Path, overwrite: bool) -> None:
    """Refuse an output inside the source or a non-empty one (unless ``overwrite``: then remove earlier outputs)."""
    if out.resolve().is_relative_to(src.resolve()):
        raise UserError(f"--out {out} lies inside --src {src}; its images would be read back as inputs")
    if check_output_folder(out, overwrite, "replace an earlier output"):
        for sub in FOLDERS.values():
            shutil.rmtree(out / sub, ignore_errors=True)
        (out / PAIRS_FILE).unlink(missing_ok=True)


def prepare(src: Path, out: Path, size: int = 256, seed: int = 0, overwrite: bool = False) -> int:
    """Write the protocol of ``src`` under ``out``; returns the number of images written."""
    if size < 8:
        raise UserError(f"--size must be at least 8 pixels, got {size}")
    entries = scan_folder(src)
    check_output(src, out, overwrite)
    entries = readable(entries, decode=True, what=f"images in {src}")
    cross = cross_reference_permutation(len(entries), seed)
    pipeline = Pipeline(size=size)
    out.mkdir(parents=True, exist_ok=True)
    for entry, j in zip(tqdm(entries, desc="prepare", unit="img"), cross):
        for key, array in eval_arrays(entry, entries[j], pipeline, seed, multi=True).items():
            save_image(array, out / FOLDERS[key] / f"{entry.name}.png")
    with open(out / PAIRS_FILE, "w", newline="") as f:
        writer = csv.writer(f, lineterminator="\n")
        writer.writerow(["name", "cross_reference"])
        writer.writerows([entry.name, entries[j].name] for entry, j in zip(entries, cross))
    return len(entries)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data.prepare",
        description="Derive the evaluation protocol of a folder of colour images: gt/, sketch/ (XDoG), "
        "reference_same/ (TPS warp of the image itself), reference_cross/ (another image, seeded derangement), "
        "the recolouring pair gt_recolour/, reference_recolour/ (hues turned, the reference mirrored) and the "
        "multi-reference item gt_multi/, reference_multi0/ to reference_multi2/ (close-ups of three parts, turned), "
        "one PNG per image with the same name in each, plus pairs.csv. Same arguments, byte-identical files.",
    )
    parser.add_argument("--src", required=True, type=Path, help="folder of colour images (recursive; jpg/png/webp/bmp)")
    parser.add_argument("--out", required=True, type=Path, help="output folder (created; must be empty or absent)")
    parser.add_argument("--size", type=int, default=256, help="side of the square outputs: short side resized, "
                        "centre crop (default 256)")
    parser.add_argument("--seed", type=int, default=0, help="protocol seed: per-image sketch sigma and warp, and the "
                        "cross-reference derangement, recolouring angle, multi-reference crops and angle (default 0)")
    parser.add_argument("--overwrite", action="store_true", help="replace an earlier output in --out (removes its "
                        "protocol sub-folders and pairs.csv; other files are left alone)")
    return parser


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    count = prepare(args.src, args.out, args.size, args.seed, args.overwrite)
    print(f"wrote {count} items of {args.size}x{args.size} to {args.out}")


if __name__ == "__main__":
    main()
