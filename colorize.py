"""Colorize sketches with a trained checkpoint.

    python colorize.py --checkpoint CKPT --sketch FILE|DIR --reference FILE [FILE ...]|DIR --out DIR|FILE.png

The logic lives in :mod:`apps.colorize_jobs` (files) and :mod:`apps.colorizer` (the loaded model, also the Python API);
``python colorize.py --help`` explains every option.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from models.ssim_guidance import DEFAULT_SCALE, check_scale, ssim_guide
from utils.cpu import use_all_cores
from utils.errors import UserError, exit_on_user_error, listing
from apps.colorize_jobs import colorize, default_trajectory_dir, parse_seeds
from apps.colorizer import GRIDS, INFERENCE_SAMPLERS, SKETCH_TYPES, ColorizeOptions

DESCRIPTION = """\
Colorize line-art sketches with the colours of a reference image, using a checkpoint written by pretrain.py or
finetune.py (its EMA weights).

Pairing: --sketch is one image or a folder (searched recursively). --reference is one image (used for every
sketch) or a folder whose files are paired with the sketches by name (path relative to the folder without the
extension; a missing name is an error). Several references per sketch (a character sheet: front view, side view,
close-ups), for a model trained with configs/variants/multiref.yaml: several image files (one set for every
sketch), or in the reference folder a sub-folder <name>/ holding the set of that sketch. Each output is
OUT/<name>.png, named after its sketch; with one sketch file, --out FILE.png writes that file. --seeds makes one
output per seed, named by it: OUT/<name>_seed<S>.png (FILE_seed<S>.png); each is the file a run with --seed S
writes.

Sizes: any input size works. The model runs at its training size: the `size` saved in the checkpoint
(datamodule_hyper_parameters, written by LightningCLI) or --size when given (needed only for checkpoints that do not
record it). The sketch is centred on a white square (aspect ratio kept), resized to that size, colorized, and the
result is resized back to the sketch's original width and height. The reference is resized and centre-cropped to
the training size, as training references were.

Sketch detection (--sketch-type auto): an input counts as a sketch when it is near-grayscale (at most 2% of the
pixels have max(R,G,B) - min(R,G,B) > 24), mostly white (at least 50% of the pixels have mean(R,G,B) >= 200) and
line art (at most 15% mid-grey pixels, 55 < mean(R,G,B) < 200); black-and-white line art with less white (at most
5% mid-grey) counts too. Anything else (a colour image, a grayscale photo) is turned into a sketch with the
project's XDoG at the training size, with the checkpoint's XDoG parameters and the middle blur sigma, as the
training sketches were made. --sketch-type sketch|image overrides the detection.
"""

EPILOG = """\
examples:
  python colorize.py --checkpoint last.ckpt --sketch sketch.png --reference ref.jpg --out results/
  python colorize.py --checkpoint last.ckpt --sketch sketch.png --reference ref.jpg --out face.png --seeds 0-3
  python colorize.py --checkpoint last.ckpt --sketch sketches/ --reference ref.jpg --out out/ --grid edm
  python colorize.py --checkpoint last.ckpt --sketch test/sketch --reference test/reference_cross --out out/cross
  python colorize.py --checkpoint multiref.ckpt --sketch new.png --reference front.png side.png eyes.png --out c.png
  python colorize.py --checkpoint last.ckpt --sketch photos/ --reference ref.png --out out/ --save-trajectory
  python colorize.py --checkpoint last.ckpt --sketch s.png --reference ref.png --out out/ --realism 0.5
  python colorize.py --checkpoint last.ckpt --sketch s.png --reference ref.png --out out/ --sigma-start 2 --init flat

Same inputs, options, --seed, --batch-size and machine: byte-identical files. Bad input: one line, exit status 2.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="colorize.py", description=DESCRIPTION, epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    io = parser.add_argument_group("inputs and outputs")
    io.add_argument("--checkpoint", required=True, type=Path, metavar="CKPT",
                    help=".ckpt written by pretrain.py or finetune.py")
    io.add_argument("--sketch", required=True, type=Path, metavar="FILE|DIR",
                    help="sketch image or folder of sketches (a colour image is turned into a sketch, see "
                    "--sketch-type)")
    io.add_argument("--reference", required=True, type=Path, nargs="+", metavar="FILE|DIR",
                    help="colour reference image (for every sketch), several images (a character sheet: one set for "
                    "every sketch; needs a model trained with configs/variants/multiref.yaml), or a folder of "
                    "references paired with the sketch folder by name, where a sub-folder <name>/ gives that sketch "
                    "a set")
    io.add_argument("--out", required=True, type=Path, metavar="DIR|FILE.png",
                    help="output folder (created; outputs are <name>.png), or with one --sketch file the output file "
                    "(with --seeds: FILE_seed<S>.png per seed)")
    io.add_argument("--overwrite", action="store_true", help="replace existing output files (without it, existing "
                    "files are an error, checked before any work)")
    io.add_argument("--sketch-type", choices=SKETCH_TYPES, default="auto", help="auto: detect (rule above); sketch: "
                    "use the input as it is; image: always extract a sketch with XDoG (default auto)")
    io.add_argument("--trust-class", action="append", default=[], metavar="MODULE.CLASS",
                    help="allow the checkpoint to name this class outside the project's registry (your own network "
                    "or schedule class; it is imported and run, so only for code you trust). Repeatable")
    io.add_argument("--size", type=int, metavar="PX",
                    help="processing size in pixels (default: the checkpoint's training size)")
    io.add_argument("--save-trajectory", action="store_true", help="also write, per image, a grid PNG of the "
                    "denoising trajectory: the sampler's states (top row) and x0 predictions (bottom row)")
    io.add_argument("--trajectory-dir", type=Path, metavar="DIR", help="folder of the trajectory grids (default: "
                    "OUT_trajectory next to --out, so that --out holds only the results to evaluate)")
    io.add_argument("--trajectory-frames", type=int, default=10, metavar="K", help="steps shown in a trajectory "
                    "grid, evenly spaced, the last included (0: every step; default 10)")

    sampling = parser.add_argument_group("sampling")
    sampling.add_argument("--steps", type=int, metavar="N", help="sampler steps (default: the checkpoint's)")
    sampling.add_argument("--sampler", choices=INFERENCE_SAMPLERS,
                          help="euler_ancestral (stochastic), euler, heun, dpmpp_2m (ODE solvers) or cold (the cold "
                               "baseline's); default: the checkpoint's")
    sampling.add_argument("--grid", choices=GRIDS, help="the noise levels the sampler visits: phi, the schedule's "
                          "own grid (evenly spaced in phi for a phi model); edm, EDM's rho grid over the same sigma "
                          "range (Karras et al. 2022, eq. 5); default: the checkpoint's")
    sampling.add_argument("--rho", type=float, metavar="R", help="rho of --grid edm (default: the checkpoint's, 7)")
    sampling.add_argument("--seed", type=int, metavar="N", help="seed of the initial noise (default 0)")
    sampling.add_argument("--seeds", metavar="SPEC", help="several samples per sketch, one file per seed named "
                          "<name>_seed<S>.png: 0-3, 0,2,5 or 7 (ranges and lists combine: 0-3,7); the file of seed S "
                          "is the one --seed S writes")
    sampling.add_argument("--batch-size", type=int, default=8, metavar="N", help="sketches per batch (default 8)")
    sampling.add_argument("--device", metavar="cpu|cuda", help="cpu or cuda (default: cuda when available)")

    controls = parser.add_argument_group(
        "controls", "realism (DiSS): low-pass the sketch to N = size / 8^S pixels and back, so that the model follows\n"
        "the lines less and its prior more; noise start (PASD's adjustable noise schedule): start from an image noised\n"
        "to --sigma-start instead of pure noise at sigma_max, on the grid truncated there (fewer network evaluations)")
    controls.add_argument("--realism", type=float, metavar="S", help="realism weight in [0, 1] (0 = the sketch as "
                          "drawn; default: the checkpoint's, 0 unless configured)")
    controls.add_argument("--sigma-start", type=float, metavar="SIGMA", help="noise level to start from (default: "
                          "pure noise at the grid's sigma_max); e.g. 1 keeps the init's colours, 10 only its palette")
    controls.add_argument("--init", default="reference", metavar="reference|flat|warp|FILE", help="the image "
                          "a --sigma-start run starts from: the reference, its mean colour as a flat fill, the "
                          "model's correspondence warp of the reference (refattn models), or an image file such as an "
                          "earlier result (fitted to each sketch like the sketch; default reference)")
    controls.add_argument("--hints", type=Path, metavar="FILE|DIR", help="colour hints for a model trained with them "
                          "(configs/variants/hints.yaml): a PNG of the sketch's size whose opaque pixels are the hint "
                          "colours, transparent elsewhere; or a folder of <name>.png per sketch (others get none)")

    guidance = parser.add_argument_group(
        "guidance", "classifier-free guidance over sketch and reference (DiSS; a scale other than 1 costs three\n"
        "network evaluations per step instead of one) and SSIM guidance towards the input sketch (a backward pass\n"
        "through the network per step)")
    guidance.add_argument("--guidance-sketch", type=float, metavar="S", help="classifier-free guidance scale of the "
                          "sketch (1 = plain conditioning; default: the checkpoint's)")
    guidance.add_argument("--guidance-reference", type=float, metavar="S", help="classifier-free guidance scale of "
                          "the reference (1 = plain conditioning; default: the checkpoint's)")
    guidance.add_argument("--guidance-ssim", type=float, default=0.0, metavar="S",
                          help="SSIM guidance step: after each sampler step x <- x - S * grad(1 - SSIM(XDoG(x0_hat), "
                          f"sketch)) (0 = off, the default; {DEFAULT_SCALE:g} was the best scale on the 64 px demo)")
    return parser


def guide_factory(args: argparse.Namespace):
    """The per-batch SSIM guide towards the input sketch (models/ssim_guidance.py).

    The sketch is the only honest target here: colorize.py has no ground truth.
    """
    scale = args.guidance_ssim
    check_scale(scale, "--guidance-ssim")  # before any work, not at the first batch
    return lambda cond: ssim_guide(scale, cond.sketch)  # None (unguided) when scale is 0


def options_from_args(args: argparse.Namespace) -> ColorizeOptions:
    return ColorizeOptions(
        steps=args.steps, sampler=args.sampler, guidance_sketch=args.guidance_sketch,
        guidance_reference=args.guidance_reference, grid=args.grid, rho=args.rho, seed=args.seed or 0,
        seeds=parse_seeds(args.seeds) if args.seeds is not None else None, batch_size=args.batch_size, size=args.size,
        device=args.device, sketch_type=args.sketch_type, save_trajectory=args.save_trajectory,
        trajectory_frames=args.trajectory_frames, overwrite=args.overwrite, guide_factory=guide_factory(args),
        trusted_classes=tuple(args.trust_class), realism=args.realism, sigma_start=args.sigma_start,
        init=args.init, hints=args.hints,
    )


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.trajectory_dir is not None and not args.save_trajectory:
        raise UserError("--trajectory-dir needs --save-trajectory")
    if args.seed is not None and args.seeds is not None:
        raise UserError("--seed and --seeds exclude each other: pass one (--seeds 5 is --seed 5 with a _seed5 name)")
    use_all_cores()
    result = colorize(args.checkpoint, args.sketch, list(args.reference), args.out, options_from_args(args),
                      trajectory_dir=args.trajectory_dir)
    grid = f"{result.grid} grid" + (f" (rho {result.rho:g})" if result.grid == "edm" else "")
    seeds = f"seeds {args.seeds}" if args.seeds is not None else f"seed {args.seed or 0}"
    print(f"model: {args.checkpoint} (EMA weights), {result.sampler} sampler, {result.steps} steps on the {grid}, "
          f"{result.size}x{result.size} px ({result.size_source}), device {result.device}, {seeds}")
    if result.realism or result.sigma_start is not None:
        start = f", noise start at sigma {result.sigma_start:g} from {args.init}" if result.sigma_start is not None \
            else ""
        print(f"controls: realism {result.realism:g}{start}")
    if result.converted:
        shown = listing(result.converted)
        print(f"note: {len(result.converted)} colour image(s) given as sketches were turned into sketches with XDoG "
              f"({shown})", file=sys.stderr)
    print(f"wrote {len(result.jobs)} image(s) to {args.out}")
    if args.save_trajectory:
        print(f"trajectory grids in {args.trajectory_dir or default_trajectory_dir(args.out)}")


if __name__ == "__main__":
    main()
