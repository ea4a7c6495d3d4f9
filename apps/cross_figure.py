"""Several runs side by side on the same test images, from the folders ``pretrain.py test`` wrote.

    python -m apps.cross_figure --outputs RUN_A/test_outputs RUN_B/test_outputs --labels concat warp \\
        --warp RUN_B/checkpoints/last.ckpt --setting cross --count 6 --out FIG.png

Columns: the sketch, the reference of the setting (``same``: the warped ground truth; ``cross``: another test
face; ``recolour``: the warped ground truth with its hues turned, mirrored), with ``--warp CKPT`` that reference as
the checkpoint's correspondence warp moves it onto the sketch (the input its network gets, ``ref_warp`` in
models/unet.py), then each run's output and the ground truth (for ``recolour``, the turned one). ``multi``: the
three references of the multi-reference setting, each run's outputs from each reference alone and from all three,
then the answer (the turned image).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import torch  # noqa: E402

from utils.errors import UserError, exit_on_user_error  # noqa: E402
from utils.eval_layout import (MULTI, MULTI_FOLDERS, MULTI_REFERENCE_KEYS, MULTI_SINGLES, MULTI_TRUTH,  # noqa: E402
                               SETTINGS, reference_folder, truth_folder)
from utils.images import load_gray, load_rgb, to_tensor, to_uint8  # noqa: E402


def warped(checkpoint: Path, sketch: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    from models.checkpoint import load_colorizer
    from models.controls import has_warp

    net = load_colorizer(checkpoint).ema.net
    if not has_warp(net):
        raise UserError(f"{checkpoint}: its network does not warp the reference (no ref_warp); drop --warp")
    with torch.no_grad():
        return net.warped_reference(sketch, reference)


def columns(outputs: list[Path], labels: list[str], setting: str, count: int, warp: Path | None) -> list:
    """(title, [count, 3, H, W] in [-1, 1]) per column."""
    multi = setting == MULTI
    truth = MULTI_FOLDERS[MULTI_TRUTH] if multi else truth_folder(setting)
    reference_subs = list(MULTI_REFERENCE_KEYS) if multi else [reference_folder(setting)]
    output_subs = list(MULTI_SINGLES) + [MULTI] if multi else [setting]
    for folder in outputs:
        for sub in ["sketch", truth] + output_subs + reference_subs:
            if not (folder / sub).is_dir():
                raise UserError(f"{folder} lacks {sub}/; pass folders written by `pretrain.py test "
                                "--model.test_output_dir DIR`")
    names = sorted(p.name for p in (outputs[0] / truth).glob("*.png"))[:count]
    if not names:
        raise UserError(f"{outputs[0] / truth} holds no .png images")

    def stack(folder: Path, gray: bool = False) -> torch.Tensor:
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise UserError(f"{folder} lacks {missing[0]}: the runs were not tested on the same images")
        return torch.stack([to_tensor(load_gray(folder / n) if gray else load_rgb(folder / n)) for n in names])

    sketch = stack(outputs[0] / "sketch", gray=True)
    references = [stack(outputs[0] / sub) for sub in reference_subs]
    cols = [("sketch", sketch.expand(-1, 3, -1, -1))]
    cols += [(f"reference {k}" if multi else f"reference ({setting})", ref) for k, ref in enumerate(references)]
    if warp is not None:
        given = torch.stack(references, 1) if multi else references[0]
        cols.append(("warped reference" + ("s" if multi else ""), warped(warp, sketch, given).clamp(-1, 1)))
    for label, folder in zip(labels, outputs):
        titles = [f"{label}: ref {k} alone" for k in range(len(MULTI_SINGLES))] + [f"{label}: all"]
        titles = titles if multi else [label]
        cols += [(title, stack(folder / sub)) for title, sub in zip(titles, output_subs)]
    return cols + [("answer" if multi else "ground truth", stack(outputs[0] / truth))]


def draw(cols: list, path: Path) -> None:
    rows = cols[0][1].shape[0]
    fig, axes = plt.subplots(rows, len(cols), figsize=(1.3 * len(cols), 1.3 * rows + 0.3), dpi=100, squeeze=False)
    for j, (title, images) in enumerate(cols):
        axes[0, j].set_title(title, fontsize=7)
        for i in range(rows):
            axes[i, j].imshow(to_uint8(images[i]))
            axes[i, j].axis("off")
    fig.tight_layout(pad=0.2)
    fig.savefig(path)
    plt.close(fig)


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outputs", type=Path, nargs="+", required=True, help="`pretrain.py test` output folders")
    parser.add_argument("--labels", nargs="+", help="a column title per output folder (default: the folder names)")
    parser.add_argument("--setting", choices=[*SETTINGS, MULTI], default="cross")
    parser.add_argument("--count", type=int, default=6, help="test images, one row each (first by name)")
    parser.add_argument("--warp", type=Path, help="a ref_warp checkpoint: add the warped reference as a column")
    parser.add_argument("--out", type=Path, required=True, help="the PNG to write")
    parser.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    args = parser.parse_args(argv)
    labels = args.labels or [p.parent.name if p.name == "test_outputs" else p.name for p in args.outputs]
    if len(labels) != len(args.outputs):
        raise UserError(f"{len(labels)} labels for {len(args.outputs)} output folders; give one per folder")
    if args.count < 1:
        raise UserError(f"--count must be at least 1, got {args.count}")
    if args.out.exists() and not args.overwrite:
        raise UserError(f"{args.out} exists; choose another --out or pass --overwrite")
    cols = columns(args.outputs, labels, args.setting, args.count, args.warp)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    draw(cols, args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
