"""phi* search: which noise-level transform makes SSIM degrade most linearly along the sampler's steps?

SSIMBaD picks phi*(sigma) = sigma / (sigma + 0.3) because, of the candidate transforms in models.phi.CANDIDATES,
it gives the highest R^2 of SSIM(x0, clip(x0 + sigma n, -1, 1)) against phi(sigma) on a grid evenly spaced in phi
(the paper's phi* search). This script reruns that analysis on any image folder and writes the ranking table and
the figures, by default into a new folder runs/optimal_phi/version_N (N the next free number). Examples:

    python optimal_phi.py --images DIR --num-images 100 --size 64 --write-config phi64.yaml
    # the figures of docs/experiments/phi-search.md, regenerated in place:
    python optimal_phi.py --images ../shared/data/anime_faces_128/train --num-images 100 \
        --out docs/experiments/figures/ --overwrite
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from models.phi import CANDIDATES
from apps import plots
from utils.errors import UserError, exit_on_user_error
from utils.outputs import check_output_folder
from apps.phi_report import markdown_table, write_reports
from apps.phi_search import PHI_STAR, PHI_STAR_C, SCHEDULE_TITLES, SSIMAlongSigmas, add_noise, sample_images, search

SWEEP_CS = (0.05, 0.1, 0.15, 0.2, 0.25, 0.3, 0.35, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1.0, 1.5, 2.0)
GRID_COLUMNS = 10  # noisy images shown per schedule
DDPM_STEPS = 1000  # the DDPM grid strides over T = 1000 timesteps
RUNS = Path("runs/optimal_phi")  # the default output: a new version_N folder here per run


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0] + " Ranks every candidate phi in models/phi.py (CANDIDATES) by the "
        "mean R^2 over images, and writes phi_ranking.{csv,json,md}, ssim_curve_{ddpm,edm,phi}.png, "
        "noisy_image_grid_{ddpm,edm,phi}.png and phi_c_sweep.png into --out (default: a new folder "
        f"{RUNS}/version_N).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    parser.add_argument("--images", required=True, type=Path, help="folder of clean images (searched recursively)")
    parser.add_argument("--num-images", type=int, default=20, help="images drawn at random (seeded) from the folder")
    parser.add_argument("--steps", type=int, default=50, help="points per grid (sampler steps)")
    parser.add_argument("--size", type=int, default=128, help="images are resized and centre-cropped to this")
    parser.add_argument("--sigma-min", type=float, default=0.002, help="smallest noise level")
    parser.add_argument("--sigma-max", type=float, default=80.0, help="largest noise level")
    parser.add_argument("--seed", type=int, default=0, help="seeds the image sample and the noise")
    parser.add_argument("--out", type=Path, help=f"folder for the tables and figures (default: {RUNS}/version_N, "
                        "N the next free number); an existing folder that is not empty needs --overwrite")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into an --out folder that holds files already (files of the same names are "
                        "replaced)")
    parser.add_argument("--sweep-c", type=float, nargs="+", default=list(SWEEP_CS), metavar="C",
                        help="values of c for phi_c_sweep.png (sigma/(sigma+c))")
    parser.add_argument("--write-config", type=Path, metavar="FILE",
                        help="also write the best sigma/(sigma+c) as a config overlay for pretrain.py (--config "
                        "configs/pretrain.yaml --config FILE); an existing file is not replaced")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads; one is fastest on a busy machine (the SSIM kernels are small)")
    parser.add_argument("--no-compile", action="store_true",
                        help="skip torch.compile (no C++ compiler needed; tens of times slower on CPU)")
    return parser


def check_args(args: argparse.Namespace) -> None:
    """One clear line for every setting the search cannot run with."""
    if args.num_images < 1:
        raise UserError(f"--num-images must be at least 1, got {args.num_images}")
    if not 2 <= args.steps <= DDPM_STEPS:
        raise UserError(f"--steps must be between 2 and {DDPM_STEPS} (the DDPM grid's T), got {args.steps}")
    if args.size < 7:
        raise UserError(f"--size must be at least 7 (the SSIM window is 7x7), got {args.size}")
    if not 0 < args.sigma_min < args.sigma_max:
        raise UserError(f"need 0 < --sigma-min < --sigma-max, got {args.sigma_min:g} and {args.sigma_max:g}")
    if min(args.sweep_c) <= 0:
        raise UserError(f"every --sweep-c value must be positive, got {min(args.sweep_c):g}")
    if args.threads < 1:
        raise UserError(f"--threads must be at least 1, got {args.threads}")
    if args.write_config is not None and args.write_config.exists():
        raise UserError(f"--write-config {args.write_config} exists already; remove it or choose another file")
    if args.out is not None:
        check_output_folder(args.out, args.overwrite, "write into it (files of the same names are replaced)")


def new_version_dir(root: Path) -> Path:
    """Create and return ``root/version_N``, N one above the highest existing version (0 for the first)."""
    taken = [int(p.name[len("version_"):]) for p in root.glob("version_*") if p.name[len("version_"):].isdigit()]
    number = max(taken, default=-1) + 1
    while True:
        folder = root / f"version_{number}"
        try:
            folder.mkdir(parents=True)
            return folder
        except FileExistsError:  # another run took it meanwhile
            number += 1


def config_overlay(best_c: float, mean_r2: float, args: argparse.Namespace, num_images: int) -> str:
    """A LightningCLI overlay that trains with the data's own phi* = sigma / (sigma + best_c)."""
    return (
        f"# phi* for {args.images}: sigma/(sigma+{best_c:g}) had the most linear SSIM decay (mean R^2 {mean_r2:.4f})\n"
        f"# among sigma/(sigma+c), c in {', '.join(f'{c:g}' for c in args.sweep_c)} ({num_images} images, "
        f"{args.size} px, {args.steps} steps, seed {args.seed}; written by optimal_phi.py).\n"
        "# Use after the main config: python pretrain.py fit --config configs/pretrain.yaml --config THIS_FILE ...\n"
        "model:\n"
        "  schedule:\n"
        "    class_path: models.schedules.PhiSchedule\n"
        f"    init_args: {{phi: \"sigma/(sigma+{best_c:g})\", sigma_min: {args.sigma_min:g}, "
        f"sigma_max: {args.sigma_max:g}}}\n"
    )


def save_figures(result, paths, images, noises, out: Path) -> list[Path]:
    """The SSIM curves and noisy-image grids of the three schedules, and the c sweep."""
    written = []
    for key, title in SCHEDULE_TITLES.items():
        sigmas, values = result.schedule_sigmas[key], result.schedule_ssim[key]
        written.append(out / f"ssim_curve_{key}.png")
        plots.plot_ssim_curve(values, sigmas, title, result.schedule_scores[key].mean, written[-1])
        steps = sorted(set(torch.linspace(0, len(sigmas) - 1, GRID_COLUMNS).round().long().tolist()))
        noisy = add_noise(images[:1], noises[:1], sigmas[steps].float())
        written.append(out / f"noisy_image_grid_{key}.png")
        plots.plot_noisy_grid(noisy, steps, sigmas[steps].tolist(), values[0, steps].tolist(),
                              f"{title}: clip(x0 + sigma n, -1, 1), image {paths[0].name}", written[-1])
    written.append(out / "phi_c_sweep.png")
    plots.plot_c_sweep([c for c, _ in result.sweep], [s.mean for _, s in result.sweep],
                       [s.std for _, s in result.sweep], result.best_c()[0], PHI_STAR_C, len(images), written[-1])
    return written


@exit_on_user_error
def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    check_args(args)
    torch.set_num_threads(args.threads)
    start = time.perf_counter()
    generator = torch.Generator().manual_seed(args.seed)
    paths, images, notes = sample_images(args.images, args.num_images, args.size, generator)
    for note in notes:
        print(f"warning: {note}", file=sys.stderr)
    # One noise tensor per image, shared by every sigma of every candidate (see apps/phi_search.py).
    noises = torch.randn(images.shape, generator=generator)
    try:
        if args.out is None:
            args.out = new_version_dir(RUNS)
        else:
            args.out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise UserError(f"cannot create the output folder {args.out or RUNS} ({err.strerror})") from None

    evaluate = SSIMAlongSigmas(compile=not args.no_compile)
    result = search(images, noises, list(CANDIDATES.values()), args.sweep_c, args.steps, args.sigma_min,
                    args.sigma_max, evaluate)

    settings = {"images": str(args.images), "num_images": len(paths), "size": args.size, "steps": args.steps,
                "sigma_min": args.sigma_min, "sigma_max": args.sigma_max, "seed": args.seed,
                "noise": "one N(0, I) tensor per image, shared by all sigmas and candidates",
                "files": [str(p.relative_to(args.images)) for p in paths]}
    written = list(write_reports(result, settings, args.out).values())
    written += save_figures(result, paths, images, noises, args.out)

    print(markdown_table(result.ranking))
    names = [s.name for s in result.ranking]
    best_c, best = result.best_c()
    print(f"\nbest: {names[0]}; {PHI_STAR} ranks {names.index(PHI_STAR) + 1} of {len(names)}")
    print(f"best c of sigma/(sigma+c) over {', '.join(f'{c:g}' for c in args.sweep_c)}: {best_c:g} "
          f"(mean R^2 {best.mean:.4f})")
    print("SSIM vs step, mean R^2: " + json.dumps({k: round(s.mean, 4) for k, s in result.schedule_scores.items()}))
    if args.write_config is not None:
        args.write_config.parent.mkdir(parents=True, exist_ok=True)
        args.write_config.write_text(config_overlay(best_c, best.mean, args, len(paths)))
        print(f"wrote the config overlay {args.write_config}: schedule sigma/(sigma+{best_c:g})")
    print(f"wrote {len(written)} files to {args.out} in {time.perf_counter() - start:.1f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
