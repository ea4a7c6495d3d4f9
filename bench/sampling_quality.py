"""Quality against cost of sampling: PSNR, SSIM and the flat-region noise figure against the number of network
evaluations (NFE), for each sampler on the checkpoint's own grid and on EDM's rho = 7 grid over the same sigma range.

The model is the checkpoint's EMA denoiser; the images are the evaluation protocol of a test folder (a fixed subset
of --count images, same or cross reference); every row starts from the same seeded noise. Euler, Euler ancestral
and DPM-Solver++(2M) cost N evaluations for N steps, Heun 2N - 1 (an NFE of 999 is Heun with 500 steps, the
official code's setting).

    python bench/sampling_quality.py --checkpoint outputs/demo/checkpoints/last.ckpt --images data_cache/demo/test
    python bench/sampling_quality.py --checkpoint CKPT --images TEST --nfe 5 10 20 35 100 --heun-999 --count 16
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from apps.plots import plot_image_rows  # noqa: E402
from data.dataset import EvalDataset, Pipeline  # noqa: E402
from data.folder import readable, scan_folder  # noqa: E402
from models.checkpoint import build_model, read_checkpoint  # noqa: E402
from models.denoiser import Cond  # noqa: E402
from models.solvers import STOCHASTIC, get_sampler  # noqa: E402
from models.schedules import sampler_grid  # noqa: E402
from utils import metrics  # noqa: E402
from utils.images import quantize  # noqa: E402


def steps_for(sampler: str, nfe: int) -> int:
    return (nfe + 1) // 2 if sampler == "heun" else nfe


def grid(model, kind: str, steps: int) -> torch.Tensor:
    """The checkpoint's own grid ("own"), or EDM's rho = 7 grid over its sigma range ("edm"), as the model samples
    with ``grid`` "phi" and "edm"."""
    return sampler_grid(model.schedule, steps, "phi" if kind == "own" else kind)


def score(out: torch.Tensor, target: torch.Tensor) -> dict[str, float]:
    p, t = quantize(out), quantize(target)
    noise, own = metrics.flat_noise(t, p)
    keep = torch.isfinite(noise)
    return {"psnr": float(metrics.psnr(t, p).mean()), "ssim": float(metrics.ssim(t, p).mean()),
            "noise": float(noise[keep].mean()), "noise_target": float(own[keep].mean())}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--images", type=Path, required=True, help="test folder (the evaluation protocol is applied)")
    parser.add_argument("--count", type=int, default=32, help="images of the folder used (default 32)")
    parser.add_argument("--reference", choices=("same", "cross"), default="same",
                        help="same: the image's own warped copy; cross: another test image (the protocol's pairing)")
    parser.add_argument("--nfe", type=int, nargs="+", default=[5, 10, 20, 35, 100])
    parser.add_argument("--samplers", nargs="+", default=["euler_ancestral", "euler", "heun", "dpmpp_2m"])
    parser.add_argument("--grids", nargs="+", choices=("own", "edm"), default=["own", "edm"],
                        help="own: the checkpoint's schedule grid; edm: EDM's rho = 7 grid over its sigma range")
    parser.add_argument("--heun-999", action="store_true", help="add Heun with 999 NFE on the own grid")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=0)
    parser.add_argument("--json", type=Path)
    parser.add_argument("--sheet", type=Path, help="PNG: the first --sheet-count outputs of every row, with the "
                                                   "sketch, the reference and the target")
    parser.add_argument("--sheet-count", type=int, default=6)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    ckpt = read_checkpoint(args.checkpoint)
    model = build_model(ckpt)
    size = int(ckpt.datamodule_hparams.get("size", 64))
    entries = readable(scan_folder(args.images), decode=True)[: args.count]
    dataset = EvalDataset(entries, Pipeline(size), seed=0)
    items = [dataset[i] for i in range(len(dataset))]
    target = torch.stack([it["target"] for it in items])
    key = "reference" if args.reference == "same" else "reference_cross"
    cond = Cond(torch.stack([it["sketch"] for it in items]), torch.stack([it[key] for it in items]))
    noise = torch.randn(target.shape, generator=torch.Generator().manual_seed(args.seed))

    runs = [(s, g, n) for g in args.grids for s in args.samplers for n in args.nfe if steps_for(s, n) >= 2]
    if args.heun_999:
        runs.append(("heun", "own", 999))
    rows, sheet = [], []
    print(f"{args.checkpoint}: {len(items)} images at {size} px, {args.reference} reference, schedule {model.schedule}")
    print(f"{'sampler':15s} {'grid':5s} {'NFE':>5s} {'PSNR':>7s} {'SSIM':>7s} {'noise':>7s} {'s/img':>7s}")
    for sampler, kind, nfe in runs:
        sigmas = grid(model, kind, steps_for(sampler, nfe))
        start = time.perf_counter()
        with torch.no_grad():
            # a stochastic sampler's further noise: seeded too, the same for every row
            extra = {"generator": torch.Generator().manual_seed(args.seed + 1)} if sampler in STOCHASTIC else {}
            out = get_sampler(sampler)(model.ema, noise * sigmas[0], sigmas, cond, **extra)
        seconds = (time.perf_counter() - start) / len(items)
        row = {"sampler": sampler, "grid": kind, "nfe": nfe, **score(out, target), "seconds_per_image": seconds}
        rows.append(row)
        sheet.append(out[: args.sheet_count])
        print(f"{sampler:15s} {kind:5s} {nfe:5d} {row['psnr']:7.2f} {row['ssim']:7.3f} {row['noise']:7.1f} "
              f"{seconds:7.3f}")
    print(f"noise: flat-region |Laplacian| (8-bit units); the targets' own: {rows[0]['noise_target']:.1f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2) + "\n")
    if args.sheet:
        k = args.sheet_count
        plot_image_rows([cond.sketch[:k].expand(-1, 3, -1, -1), cond.reference[:k], *sheet, target[:k]],
                        ["sketch", f"reference ({args.reference})",
                         *(f"{r['sampler']}, {r['grid']} grid, NFE {r['nfe']}\nPSNR {r['psnr']:.2f}, noise "
                           f"{r['noise']:.1f}" for r in rows), "target"],
                        f"{args.checkpoint.name}: {len(items)} images scored, the first {k} shown", args.sheet)
        print(f"wrote {args.sheet}")


if __name__ == "__main__":
    main()
