"""A figure of one sampling control on one sketch: a row per value of the control.

    python -m apps.controls_figure --checkpoint CKPT --sketch S --reference R --control realism \
        --values 0 0.25 0.5 0.75 1 --out assets/control_realism.png
    python -m apps.controls_figure --checkpoint CKPT --sketch S --reference R --control sigma_start \
        --values 80 10 3 1 0.3 --init flat --out assets/control_noise_start.png

Columns: the sketch as the model sees it (low-passed for realism), the reference, the start of the sampler (the
initial image plus sigma_start n for a noise start; pure noise, shown clipped, otherwise), then the outputs for
``--seeds``. The inputs are prepared as colorize.py prepares them (:mod:`apps.colorize_inputs`) and sampled
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

from apps.colorize import checkpoint_xdog, initial_images  # noqa: E402
from apps.colorize_inputs import prepare_reference, prepare_sketch  # noqa: E402
from models.checkpoint import build_model, read_checkpoint  # noqa: E402
from models.controls import lowpass_sketch  # noqa: E402
from models.denoiser import Cond  # noqa: E402
from utils.errors import exit_on_user_error  # noqa: E402
from utils.images import to_tensor, to_unit  # noqa: E402

CONTROLS = ("realism", "sigma_start")


def rows(model, cond: Cond, control: str, values: list[float], seeds: list[int], init: str,
         prepared) -> list[torch.Tensor]:
    """Per value, the tiles [sketch seen, reference, start, outputs per seed] in [0, 1]; the start is the sampler's
    own first state for the first seed (recorded by its callback)."""
    start_image = initial_images(init, cond.reference, [prepared], None) if control == "sigma_start" else None
    out = []
    for value in values:
        options = {"realism": value} if control == "realism" else {"sigma_start": value, "init": start_image}
        seen = lowpass_sketch(cond.sketch, value) if control == "realism" else cond.sketch
        starts: list[torch.Tensor] = []

        def record(i, x, denoised, sigma):
            if i == 0 and not starts:
                starts.append(x)

        with torch.no_grad():
            samples = [model.sample(cond, seed=seed, callback=record, **options) for seed in seeds]
        out.append(torch.cat([to_unit(seen.expand(-1, 3, -1, -1)), to_unit(cond.reference),
                              to_unit(starts[0].clamp(-1, 1)), *[to_unit(s) for s in samples]]))
    return out


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", type=Path, required=True)
    parser.add_argument("--sketch", type=Path, required=True, help="a sketch, or a colour image (XDoG is applied)")
    parser.add_argument("--reference", type=Path, required=True)
    parser.add_argument("--control", choices=CONTROLS, required=True)
    parser.add_argument("--values", type=float, nargs="+", required=True, help="one row per value")
    parser.add_argument("--init", choices=("reference", "flat"), default="reference",
                        help="start image of --control sigma_start (default reference)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--out", type=Path, required=True, help="PNG to write")
    args = parser.parse_args(argv)
    ckpt = read_checkpoint(args.checkpoint)
    model = build_model(ckpt)
    size = int(ckpt.datamodule_hparams.get("size", 64))
    prepared = prepare_sketch(args.sketch, size, checkpoint_xdog(ckpt.datamodule_hparams))
    cond = Cond(to_tensor(prepared.sketch)[None], to_tensor(prepare_reference(args.reference, size))[None])
    tiles = rows(model, cond, args.control, args.values, args.seeds, args.init, prepared)
    columns = ["sketch seen", "reference", "start", *[f"seed {s}" for s in args.seeds]]
    grid = torchvision.utils.make_grid(torch.cat(tiles), nrow=len(columns), padding=2, pad_value=1.0)
    fig, ax = plt.subplots(figsize=(1.2 * len(columns) + 1.2, 1.2 * len(args.values) + 0.6), dpi=80)
    ax.imshow(grid.permute(1, 2, 0).numpy())
    step = grid.shape[1] / len(args.values)
    ax.set_yticks([step * (i + 0.5) for i in range(len(args.values))], [f"{v:g}" for v in args.values])
    col = grid.shape[2] / len(columns)
    ax.set_xticks([col * (i + 0.5) for i in range(len(columns))], columns, fontsize=8)
    ax.set_ylabel(args.control if args.control == "realism" else f"sigma_start (init: {args.init})")
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
