"""A figure of one sampling control on one sketch: a row per value of the control.

    python -m apps.controls_figure --checkpoint CKPT --sketch S --reference R --control realism \
        --values 0 0.25 0.5 0.75 1 --out docs/experiments/figures/control_realism.png
    python -m apps.controls_figure --checkpoint CKPT --sketch S --reference R --control sigma_start \
        --values 80 10 3 1 0.3 --init flat --out docs/experiments/figures/control_noise_start.png
    python -m apps.controls_figure --checkpoint HINTS_CKPT --sketch S --reference R --control hints \
        --values 0 2 6 16 --hint-source IMG --out docs/experiments/figures/control_hints.png

Columns: the sketch as the model sees it (low-passed for realism), the reference, the start of the sampler (the
initial image plus sigma_start n for a noise start; pure noise, shown clipped, otherwise), then the outputs for
``--seeds``. For ``hints`` (a model trained with them) a value is a number of hint points: patches of a fixed
side at seeded positions (the same first ones in every row), coloured from ``--hint-source``, and the start column
shows them over the sketch. The inputs are prepared as colorize.py prepares them (:mod:`apps.colorize_inputs`) and sampled
through the model's own ``sample``; a sigma_start at or above sigma_max is plain sampling.
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import torch  # noqa: E402
import torchvision  # noqa: E402

from apps.colorizer import checkpoint_xdog, start_images  # noqa: E402
from apps.colorize_inputs import prepare_reference, prepare_sketch, show_hints  # noqa: E402
from data.hints import add_patch  # noqa: E402
from models.checkpoint import build_model, read_checkpoint  # noqa: E402
from models.controls import has_warp, lowpass_sketch  # noqa: E402
from models.denoiser import Cond  # noqa: E402
from utils.errors import UserError, exit_on_user_error  # noqa: E402
from utils.images import to_tensor, to_unit  # noqa: E402

CONTROLS = ("realism", "sigma_start", "hints")
MAX_FIGURE_HINTS = 64


def figure_hints(source, count: int, seed: int = 0) -> torch.Tensor:
    """[1, 4, H, W] hints: ``count`` patches of side H/16 at the first ``count`` positions of a seeded draw."""
    h, w = source.shape[:2]
    side = max(1, h // 16)
    positions = torch.Generator().manual_seed(seed)
    n = max(count, MAX_FIGURE_HINTS)  # one draw for every count: the first positions are shared
    ys = torch.randint(h // 8, h - h // 8 - side, (n,), generator=positions)
    xs = torch.randint(w // 8, w - w // 8 - side, (n,), generator=positions)
    hints = torch.zeros(4, h, w)
    for y, x in list(zip(ys.tolist(), xs.tolist()))[:count]:
        add_patch(hints, source, y, x, side)
    return hints[None]


def rows(model, cond: Cond, control: str, values: list[float], seeds: list[int], init: str,
         prepared, hint_source=None) -> list[torch.Tensor]:
    """Per value, the tiles [sketch seen, reference, start, outputs per seed] in [0, 1]; the start is the sampler's
    own first state for the first seed (recorded by its callback)."""
    with torch.no_grad():
        begin = start_images(init, cond, [prepared], None, model.ema.net) if control == "sigma_start" else None
    out = []
    for value in values:
        seen, given = cond.sketch, cond
        if control == "realism":
            options, seen = {"realism": value}, lowpass_sketch(cond.sketch, value)
        elif control == "sigma_start":
            options = {"sigma_start": value, "init": begin}
        else:
            options, given = {}, cond._replace(hints=figure_hints(hint_source, int(value)))
        starts: list[torch.Tensor] = []

        def record(i, x, denoised, sigma):
            if i == 0 and not starts:
                starts.append(x)

        with torch.no_grad():
            samples = [model.sample(given, seed=seed, callback=record, **options) for seed in seeds]
        start = show_hints(cond.sketch, given.hints) if control == "hints" else starts[0].clamp(-1, 1)
        out.append(torch.cat([to_unit(seen.expand(-1, 3, -1, -1)), to_unit(cond.reference),
                              to_unit(start), *[to_unit(s) for s in samples]]))
    return out


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--sketch", type=Path, required=True, help="a sketch, or a colour image (XDoG is applied)")
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--control", choices=CONTROLS, required=True)
    parser.add_argument("--values", type=float, nargs="+", required=True, help="one row per value")
    parser.add_argument("--init", choices=("reference", "flat", "warp"), default="reference",
                        help="start image of --control sigma_start (default reference)")
    parser.add_argument("--hint-source", type=Path, help="colour image the hint points of --control hints take "
                        "their colours from (fitted like a reference)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = parser.parse_args(argv)
    if (args.control == "hints") != (args.hint_source is not None):
        parser.error("--hint-source goes with --control hints, and --control hints needs it")
    ckpt = read_checkpoint(args.checkpoint)
    model = build_model(ckpt)
    size = int(ckpt.datamodule_hparams.get("size", 64))
    prepared = prepare_sketch(args.sketch, size, checkpoint_xdog(ckpt.datamodule_hparams))
    cond = Cond(to_tensor(prepared.sketch)[None], to_tensor(prepare_reference(args.reference, size))[None])
    if args.control == "hints" and not model.ema.takes_hints:
        raise UserError(f"{args.checkpoint} was trained without colour hints (configs/variants/hints.yaml)")
    if args.control == "sigma_start" and args.init == "warp" and not has_warp(model.ema.net):
        raise UserError(f"--init warp: {args.checkpoint} has no correspondence warp (configs/variants/refattn.yaml)")
    source = prepare_reference(args.hint_source, size) if args.hint_source is not None else None
    tiles = rows(model, cond, args.control, args.values, args.seeds, args.init, prepared, source)
    columns = ["sketch seen", "reference", "hints" if args.control == "hints" else "start",
               *[f"seed {s}" for s in args.seeds]]
    grid = torchvision.utils.make_grid(torch.cat(tiles), nrow=len(columns), padding=2, pad_value=1.0)
    fig, ax = plt.subplots(figsize=(1.2 * len(columns) + 1.2, 1.2 * len(args.values) + 0.6), dpi=80)
    ax.imshow(grid.permute(1, 2, 0).numpy())
    step = grid.shape[1] / len(args.values)
    ax.set_yticks([step * (i + 0.5) for i in range(len(args.values))], [f"{v:g}" for v in args.values])
    col = grid.shape[2] / len(columns)
    ax.set_xticks([col * (i + 0.5) for i in range(len(columns))], columns, fontsize=8)
    labels = {"realism": "realism", "sigma_start": f"sigma_start (init: {args.init})", "hints": "hint points"}
    ax.set_ylabel(labels[args.control])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.tight_layout()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    plt.close(fig)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
