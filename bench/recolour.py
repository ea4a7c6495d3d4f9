"""Colour transfer with a known answer: the evaluation protocol's same-reference items, with the hues of the
reference and of the ground truth turned together by one angle per image (CIELAB, lightness kept; utils.chroma).
``pretrain.py test`` scores the mirrored form of this setting on every test image ("recolour", data.protocol, with
each image's angle drawn from its own seed); this bench compares checkpoints side by side on the first --count
images, mirrored or in place, with a sheet of their outputs.

The sketch is unchanged, so the right output is the turned ground truth. A model that takes its colours from the
reference scores high PSNR against it; one that colours from its prior (or from the data set's usual colours)
scores high against the original ground truth instead. ``--mirror`` also mirrors the turned reference, so that a
model can follow it only through correspondence, not by copying pixels in place. Unlike the cross-reference colour
distance, a paste of the reference cannot win here: the reference's layout is not the sketch's.

Each image's angle is drawn uniformly from [pi/2, 3pi/2] (at least a quarter turn from its own hues) with --seed;
every checkpoint samples the same items with its configured sampler and steps, from the same seed.

    python bench/recolour.py --checkpoints runs/concat_s0/checkpoints/last.ckpt runs/warp1_s0/checkpoints/last.ckpt \\
        --labels concat "warp L1" --images ../shared/data/anime_faces_128/test --count 48 [--mirror] [--sheet S.png]
"""
from __future__ import annotations

import argparse
import json
import math
import sys
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from apps.plots import plot_image_rows  # noqa: E402
from data.dataset import EvalDataset, Pipeline  # noqa: E402
from data.folder import readable, scan_folder  # noqa: E402
from data.protocol import recolour_pair  # noqa: E402
from models.checkpoint import build_model, read_checkpoint  # noqa: E402
from models.denoiser import Cond  # noqa: E402
from utils import metrics  # noqa: E402
from utils.errors import UserError, exit_on_user_error  # noqa: E402
from utils.images import quantize, to_tensor  # noqa: E402


def turned_items(images: Path, count: int, size: int, seed: int, mirror: bool) -> dict[str, torch.Tensor]:
    """sketch, the turned (and optionally mirrored) reference, the turned and the original ground truth, [-1, 1]."""
    entries = readable(scan_folder(images), decode=True)[:count]
    dataset = EvalDataset(entries, Pipeline(size), seed=0)
    angles = np.random.default_rng(seed).uniform(math.pi / 2, 3 * math.pi / 2, len(entries))
    out: dict[str, list[torch.Tensor]] = {"sketch": [], "reference": [], "target": [], "original": []}
    for i, angle in enumerate(angles):
        item = dataset[i]
        target, reference = (quantize(item[key]).permute(1, 2, 0).numpy() for key in ("target", "reference"))
        target, reference = recolour_pair(target, reference, float(angle), mirror)
        out["reference"].append(to_tensor(reference))
        out["target"].append(to_tensor(target))
        out["sketch"].append(item["sketch"])
        out["original"].append(item["target"])
    return {key: torch.stack(value) for key, value in out.items()}


def scores(out: torch.Tensor, items: dict[str, torch.Tensor]) -> dict[str, float]:
    """PSNR / SSIM against the turned ground truth, PSNR against the original one, colour distance to the turned."""
    p, turned, original = quantize(out), quantize(items["target"]), quantize(items["original"])
    return {"psnr": float(metrics.psnr(turned, p).mean()), "ssim": float(metrics.ssim(turned, p).mean()),
            "psnr_original": float(metrics.psnr(original, p).mean()),
            "colour_distance": float(metrics.colour_distance(turned, p).mean())}


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoints", type=Path, nargs="+", required=True)
    parser.add_argument("--labels", nargs="+", help="one per checkpoint (default: the file names)")
    parser.add_argument("--images", type=Path, required=True, help="test folder (the evaluation protocol is applied)")
    parser.add_argument("--count", type=int, default=48, help="images of the folder used (default 48)")
    parser.add_argument("--mirror", action="store_true", help="mirror the turned reference (no pixel alignment)")
    parser.add_argument("--seed", type=int, default=0, help="angles and sampling noise (default 0)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--sheet", type=Path, help="PNG: the first --sheet-count items and every model's outputs")
    parser.add_argument("--sheet-count", type=int, default=6)
    args = parser.parse_args(argv)
    labels = args.labels or [str(p) for p in args.checkpoints]
    if len(labels) != len(args.checkpoints):
        raise UserError(f"--labels: {len(labels)} given for {len(args.checkpoints)} checkpoints; give one each")
    if args.count < 1:
        raise UserError(f"--count must be at least 1, got {args.count}")

    models = [(label, read_checkpoint(path)) for label, path in zip(labels, args.checkpoints)]
    sizes = {int(ckpt.datamodule_hparams.get("size", 64)) for _, ckpt in models}
    if len(sizes) > 1:
        raise UserError(f"the checkpoints were trained at different sizes ({sorted(sizes)}); compare one size")
    items = turned_items(args.images, args.count, sizes.pop(), args.seed, args.mirror)
    rows = {"turned reference itself": scores(items["reference"], items),
            "original ground truth (ignores the reference)": scores(items["original"], items)}
    outputs = []
    for label, ckpt in models:
        model = build_model(ckpt).eval()
        with torch.no_grad():
            out = model.sample(Cond(items["sketch"], items["reference"]), seed=args.seed)
        rows[label] = scores(out, items)
        outputs.append(out[: args.sheet_count])
    setting = "turned and mirrored" if args.mirror else "turned"
    print(f"{len(items['target'])} images of {args.images}, reference and ground truth {setting} (seed {args.seed})")
    print(f"{'':48s} {'PSNR':>7s} {'SSIM':>7s} {'PSNR to original':>17s} {'colour dist.':>13s}")
    for label, row in rows.items():
        print(f"{label:48s} {row['psnr']:7.2f} {row['ssim']:7.3f} {row['psnr_original']:17.2f} "
              f"{row['colour_distance']:13.1f}")
    print("PSNR / SSIM / colour distance against the turned ground truth (the right answer); PSNR to original: against"
          " the untouched ground truth, high when the model keeps the data set's colours")
    if args.json:
        args.json.write_text(json.dumps({"mirror": args.mirror, "seed": args.seed, "rows": rows}, indent=2) + "\n")
    if args.sheet:
        k = args.sheet_count
        plot_image_rows([items["sketch"][:k].expand(-1, 3, -1, -1), items["reference"][:k], *outputs,
                         items["target"][:k], items["original"][:k]],
                        ["sketch", f"reference ({setting})", *labels, "turned ground truth", "original"],
                        f"recolouring: {len(items['target'])} images scored, the first {k} shown", args.sheet)
        print(f"wrote {args.sheet}")


if __name__ == "__main__":
    main()
