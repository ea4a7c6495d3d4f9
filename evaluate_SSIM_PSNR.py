"""Paired image metrics of generated images against their ground truth: PSNR, SSIM, MS-SSIM and optionally LPIPS.

Also assembles the paper's comparison table from result files (--markdown). Run with --help for the definitions.
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path
from typing import Any

import torch
from tqdm import tqdm

from utils import metrics
from utils.errors import UserError, exit_on_user_error
from utils.pairs import check_min_size, count_size_mismatches, iter_pair_batches, match_pairs
from utils.report import PAIRS_SCRIPT, format_number, load_results, paper_table, text_table, write_json
from utils.weights import LPIPS_TRUNKS, build_lpips

EPILOG = """\
pairing: a generated image pairs with the real image of the same name: the path relative to its folder without the
  extension (a.png pairs with a.jpg). A missing or extra name, or two files of one name, is an error that lists them.
  Images of different size are an error unless --resize (generated images are resized to the real size, bicubic).

metrics (per image pair, on 8-bit RGB, data range 255; mean and population std over the pairs):
  PSNR     10 log10(255^2 / MSE) over all pixels and channels; identical images give inf (a mean of inf).
           Equals skimage.metrics.peak_signal_noise_ratio(real, fake, data_range=255).
  SSIM     Gaussian window 11x11, sigma 1.5, K1 0.01, K2 0.03, population covariance, mean over channels and over
           the pixels whose window is inside the image (5-px border left out). Equals
           skimage.metrics.structural_similarity(real, fake, gaussian_weights=True, sigma=1.5,
           use_sample_covariance=False, data_range=255, channel_axis=2).
  MS-SSIM  torchmetrics' 5-scale MS-SSIM, same window. Only defined for images of at least 176 px per side (the
           window must fit the coarsest scale); smaller images are reported as n/a with the reason, never resized.
  flat-region noise  speckle: mean |Laplacian| (8-bit units, 4-neighbour kernel, mean over RGB) of the generated
           image inside the flat regions of the real one (pixels whose 5x5 neighbourhood has |Laplacian| <= 4 in the
           real image), printed next to the real image's own value; Gaussian noise of std s on a flat image gives
           3.57 s. Images without flat regions are left out of its mean (n says how many count).
  colour distance  (--reference DIR: the reference each generated image was given, paired by name) how far the
           generated colours are from the reference's: sliced Wasserstein-1 distance between the two CIELAB pixel
           distributions (64 fixed directions, 128 quantiles each), in Delta E (CIE76) units. No alignment is
           needed: a rearrangement of the reference's pixels scores 0, a uniform colour shift of Delta E d scores d.
           In the cross-reference setting it rewards following the reference, which PSNR does not; it also
           rewards pasting the misaligned reference, which the copy figures tell apart.
  copy     (--reference DIR) PSNR and SSIM of each generated image against its reference: well above the real
           images' own figures, the output copies the reference pixel by pixel instead of colouring the sketch.
  LPIPS    (--lpips) LPIPS v0.1 on [-1, 1] images; the trunk's ImageNet weights are read from
           $TORCH_HOME/hub/checkpoints (vgg16-397923af.pth, alexnet-owt-7be5be79.pth) or --lpips-weights.

paper table (PSNR / MS-SSIM / FID, same / cross) for results/<method>/{same,cross} and ground truth test/gt:
  for s in same cross; do
    python evaluate_SSIM_PSNR.py --real test/gt --fake results/ours/$s --json results/json/ours_$s.pairs.json
    python evaluate_FID.py       --real test/gt --fake results/ours/$s --json results/json/ours_$s.fid.json
  done
  python evaluate_SSIM_PSNR.py --markdown results/json
The method is the folder above the generated images (ours), the setting its name (same, cross).
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="PSNR, SSIM, MS-SSIM (and LPIPS) of generated images against the real images of the same name.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--real", type=Path, help="folder of ground-truth images")
    parser.add_argument("--fake", type=Path, help="folder of generated images, named like the real ones")
    parser.add_argument("--json", type=Path, help="also write the results (with per-image values) to this JSON file")
    parser.add_argument("--resize", action="store_true", help="resize generated images to the real image size")
    parser.add_argument("--reference", type=Path, help="folder of the references the generated images were given "
                        "(paired by name): adds the colour distance to them")
    parser.add_argument("--lpips", action="store_true", help="also compute LPIPS (needs the trunk's ImageNet weights)")
    parser.add_argument("--lpips-net", choices=sorted(LPIPS_TRUNKS), default="alex", help="LPIPS trunk (default alex)")
    parser.add_argument(
        "--lpips-weights", type=Path, help="torchvision checkpoint of the LPIPS trunk (implies --lpips)"
    )
    parser.add_argument("--test-random-lpips", action="store_true", help=argparse.SUPPRESS)  # tests only
    parser.add_argument("--batch-size", type=int, default=32, help="image pairs per batch (default 32)")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    parser.add_argument(
        "--markdown",
        nargs="+",
        type=Path,
        metavar="JSON_OR_DIR",
        help="instead of evaluating, print the paper's table from JSON files written by both scripts (or folders "
        "holding them)",
    )
    return parser


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    pairs = match_pairs(args.real, args.fake)
    resized = count_size_mismatches(pairs, args.resize)
    check_min_size(pairs, metrics.SSIM_MIN_SIDE, f"SSIM's {metrics.SSIM_MIN_SIDE}-px window needs")
    lpips_net, lpips_name = None, None
    if args.lpips or args.lpips_weights or args.test_random_lpips:
        lpips_name = "random-init (test only)" if args.test_random_lpips else args.lpips_net
        lpips_net = build_lpips(args.lpips_net, args.lpips_weights, random_init_for_tests=args.test_random_lpips)
        lpips_net = lpips_net.to(args.device)
    per_image: dict[str, dict[str, float]] = {}
    unavailable: set[str] = set()
    with tqdm(total=len(pairs), desc="pairs", unit="img", leave=False) as progress:
        for names, real, fake in iter_pair_batches(pairs, args.batch_size):
            real, fake = real.to(args.device), fake.to(args.device)
            values = {"psnr": metrics.psnr(real, fake), "ssim": metrics.ssim(real, fake)}
            values["flat_noise"], values["flat_noise_real"] = metrics.flat_noise(real, fake)
            reason = metrics.ms_ssim_unavailable(*real.shape[-2:])
            if reason is None:
                values["ms_ssim"] = metrics.ms_ssim(real, fake)
            else:
                unavailable.add(reason)
            if lpips_net is not None:
                values["lpips"] = metrics.lpips_distance(real, fake, lpips_net)
            for i, name in enumerate(names):
                per_image[name] = {key: float(value[i]) for key, value in values.items()}
            progress.update(len(names))
    if args.reference is not None:
        for names, reference, fake in iter_pair_batches(match_pairs(args.reference, args.fake), args.batch_size):
            values = {"colour_distance": metrics.colour_distance(reference, fake),
                      "reference_psnr": metrics.psnr(reference, fake), "reference_ssim": metrics.ssim(reference, fake)}
            for i, name in enumerate(names):
                per_image[name].update({key: float(value[i]) for key, value in values.items()})
    summary = {key: metrics.summarize([v[key] for v in per_image.values() if key in v]) for key in ("psnr", "ssim")}
    for key in ("flat_noise", "flat_noise_real"):  # images without flat regions (NaN) do not count
        summary[key] = metrics.summarize([v[key] for v in per_image.values() if math.isfinite(v[key])])
    if unavailable:
        summary["ms_ssim"] = {"mean": None, "std": None, "n": 0, "unavailable": "; ".join(sorted(unavailable))}
    else:
        summary["ms_ssim"] = metrics.summarize([v["ms_ssim"] for v in per_image.values()])
    if lpips_net is not None:
        summary["lpips"] = metrics.summarize([v["lpips"] for v in per_image.values()])
    if args.reference is not None:
        for key in ("colour_distance", "reference_psnr", "reference_ssim"):
            summary[key] = metrics.summarize([v[key] for v in per_image.values()])
    return {
        "script": PAIRS_SCRIPT,
        "real": str(args.real.resolve()),
        "fake": str(args.fake.resolve()),
        "num_pairs": len(pairs),
        "resized": resized,
        "lpips": lpips_name,
        "reference": str(args.reference.resolve()) if args.reference is not None else None,
        "metrics": summary,
        "per_image": per_image,
    }


def print_result(result: dict[str, Any]) -> None:
    print(f"real: {result['real']}  fake: {result['fake']}  ({result['num_pairs']} pairs", end="")
    print(f", {result['resized']} resized)" if result["resized"] else ")")
    titles = {"psnr": "PSNR (dB)", "ssim": "SSIM", "ms_ssim": "MS-SSIM", "lpips": f"LPIPS {result['lpips']}",
              "flat_noise": "flat-region noise", "flat_noise_real": "  (of the real images)",
              "colour_distance": "colour distance to reference", "reference_psnr": "PSNR to reference (copy)",
              "reference_ssim": "SSIM to reference (copy)"}
    rows = [["metric", "mean", "std"]]
    for key, entry in result["metrics"].items():
        if entry.get("unavailable"):
            rows.append([titles[key], "n/a", entry["unavailable"]])
        else:
            rows.append([titles[key], format_number(entry["mean"], 4), format_number(entry["std"], 4)])
    print(text_table(rows))


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.markdown:
        if args.real or args.fake:
            raise UserError("--markdown prints a table from result files; run it without --real/--fake")
        print(paper_table(load_results(args.markdown)))
        return
    if args.real is None or args.fake is None:
        raise UserError("pass --real DIR and --fake DIR (or --markdown JSON_OR_DIR ... for the paper table)")
    if args.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {args.batch_size}")
    result = evaluate(args)
    print_result(result)
    if args.json:
        write_json(args.json, result)
        print(f"results written to {args.json}")


if __name__ == "__main__":
    main(sys.argv[1:])
