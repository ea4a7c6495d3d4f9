"""FID and KID between a folder of real images and a folder of generated images (torchmetrics, Inception-v3).

The real folder's Inception features are cached on disk by content, so evaluating several result folders against one
test set extracts them once. Run with --help for the details.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import torch

from utils import metrics
from utils.errors import UserError, exit_on_user_error
from utils.images import image_size, list_images
from utils.report import FID_SCRIPT, format_number, text_table, write_json
from utils.weights import (
    INCEPTION_FEATURE_DIMS,
    INCEPTION_FILES,
    RANDOM_INIT_SEED,
    build_inception,
    find_inception_weights,
)

EPILOG = f"""\
weights: torch-fidelity's Inception-v3 (converted from TF's 2015-12-05 graph), the network torchmetrics'
  FrechetInceptionDistance uses: {INCEPTION_FILES[0]} in $TORCH_HOME/hub/checkpoints (default
  ~/.cache/torch/hub/checkpoints; pytorch-fid's {INCEPTION_FILES[1]} there is used too), or
  --inception-weights PATH. Nothing is downloaded; a missing file is an error.
  Images are resized to 299 px with TF1-compatible bilinear interpolation, as torch-fidelity and the original TF FID.

cache: the real folder's features are stored in --cache-dir under a SHA-256 of its file names and bytes, the weights
  file and the feature size, and reused while none of them changes.

sample size: FID from fewer than {metrics.FID_UNBIASED_MIN} images per folder is biased upward (the 2048-d
  covariance is singular); compare methods on equal sample sizes, or with KID, which is unbiased. KID uses
  --kid-subsets random subsets of min({metrics.KID_SUBSET_SIZE}, #real, #fake) images, seeded by --seed (one subset
  of all images when both folders are that small).

paper table: see `python evaluate_SSIM_PSNR.py --help` (write --json here and there, then --markdown).
"""


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "ssimbad" / "fid_features"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description="FID and KID of a folder of generated images against a folder of real images.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--real", type=Path, required=True, help="folder of real images (features cached)")
    parser.add_argument("--fake", type=Path, required=True, help="folder of generated images")
    parser.add_argument("--json", type=Path, help="also write the results to this JSON file")
    parser.add_argument(
        "--inception-weights", type=Path, help=f"path of {INCEPTION_FILES[0]} (default: torch hub cache)"
    )
    parser.add_argument("--batch-size", type=int, default=50, help="images per Inception batch (default 50)")
    parser.add_argument(
        "--dims", type=int, choices=INCEPTION_FEATURE_DIMS, default=2048, help="Inception feature size (default 2048)"
    )
    parser.add_argument("--kid-subsets", type=int, default=100, help="number of KID subsets (default 100)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the KID subsets (default 0)")
    parser.add_argument(
        "--cache-dir", type=Path, default=default_cache_dir(), help="feature cache (default %(default)s)"
    )
    parser.add_argument("--no-cache", action="store_true", help="neither read nor write the feature cache")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu", help="torch device")
    parser.add_argument("--test-random-inception", action="store_true", help=argparse.SUPPRESS)  # tests only
    return parser


def _check(args: argparse.Namespace, real: list[Path], fake: list[Path]) -> None:
    for option in ("batch_size", "kid_subsets"):
        if getattr(args, option) < 1:
            raise UserError(f"--{option.replace('_', '-')} must be at least 1, got {getattr(args, option)}")
    for folder, files in ((args.real, real), (args.fake, fake)):
        if len(files) < 2:
            raise UserError(f"{folder} holds {len(files)} image; FID and KID need at least 2 images per folder")
        for path in files:  # headers only: a bad file stops the run before any feature is computed
            image_size(path)


def evaluate(args: argparse.Namespace) -> dict[str, Any]:
    real_files, fake_files = list_images(args.real), list_images(args.fake)
    _check(args, real_files, fake_files)
    if args.test_random_inception:
        extractor = build_inception(dims=args.dims, random_init_for_tests=True)
        weights = f"random-init seed {RANDOM_INIT_SEED} (test only)"
    else:
        weights_path = find_inception_weights(args.inception_weights)
        extractor = build_inception(weights_path, args.dims)
        weights = f"{weights_path.name} sha256:{metrics.file_sha256(weights_path)}"
    device = torch.device(args.device)
    if args.no_cache:
        real = metrics.inception_features(real_files, extractor, args.batch_size, device, "real features")
        real_note = "features computed (cache off)"
    else:
        settings = {"weights": weights, "dims": args.dims, "resize": "tf1-bilinear-299", "format": 1}
        real, cache_file, reused = metrics.cached_inception_features(
            real_files, args.real, extractor, settings, args.cache_dir, args.batch_size, device, "real features"
        )
        real_note = f"features {'reused from' if reused else 'computed and cached in'} {cache_file}"
    fake = metrics.inception_features(fake_files, extractor, args.batch_size, device, "fake features")
    warnings = []
    if min(len(real_files), len(fake_files)) < metrics.FID_UNBIASED_MIN:
        warnings.append(
            f"FID from {len(real_files)} real / {len(fake_files)} generated images (< {metrics.FID_UNBIASED_MIN}) "
            "is biased upward; compare with KID or at equal sample sizes"
        )
    if args.test_random_inception:
        warnings.append("FID/KID from a randomly initialised Inception (test-only option): meaningless as a score")
    return {
        "script": FID_SCRIPT,
        "real": str(args.real.resolve()),
        "fake": str(args.fake.resolve()),
        "num_real": len(real_files),
        "num_fake": len(fake_files),
        "real_features": real_note,
        "inception": {"weights": weights, "dims": args.dims},
        "metrics": metrics.fid_kid(real, fake, args.kid_subsets, args.seed),
        "warnings": warnings,
    }


def print_result(result: dict[str, Any]) -> None:
    print(f"real: {result['real']} ({result['num_real']} images, {result['real_features']})")
    print(f"fake: {result['fake']} ({result['num_fake']} images)")
    scores = result["metrics"]
    if scores["kid_std"] is None:
        kid = f"{format_number(scores['kid_mean'], 5)} (one subset: all images of both folders)"
    else:
        kid = f"{format_number(scores['kid_mean'], 5)} ± {format_number(scores['kid_std'], 5)} "
        kid += f"({scores['kid_subsets']} subsets of {scores['kid_subset_size']})"
    print(text_table([["metric", "value"], ["FID", format_number(scores["fid"], 3)], ["KID", kid]]))
    for warning in result["warnings"]:
        print(f"warning: {warning}", file=sys.stderr)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    result = evaluate(args)
    print_result(result)
    if args.json:
        write_json(args.json, result)
        print(f"results written to {args.json}")


if __name__ == "__main__":
    main(sys.argv[1:])
