"""Score a test-output folder written by ``pretrain.py test`` against its two trivial baselines, and draw a grid.

    python -m apps.demo_report --outputs outputs/demo/test --out outputs/demo

Writes ``metrics.json`` = {"model": {"same": {psnr, ssim, flat_noise, flat_noise_target, colour_distance},
"cross": {...}, "recolour": {...}}, "baselines": {"reference": {"same", "cross", "recolour"}, "gray_sketch": {...},
"original_colours": {...}}, "target_colour_distance": {"same", "cross", "recolour"}, "cross_copy": {"model": {psnr,
ssim}, "target": {psnr, ssim}}}
and ``grid.png`` (rows: sketch | reference | output | target; panels titled same-reference, cross-reference,
recolouring).
``colour_distance`` (:func:`utils.metrics.colour_distance`, Delta E) is how far an output's colours are from the
reference it was given; ``target_colour_distance`` is the same figure for the ground truth, the value a model that
ignored the reference and guessed the true colours would get. Being alignment-free, it scores a paste of the
misaligned cross reference as well as a colorization that follows it; ``cross_copy`` (PSNR and SSIM of each
cross-reference output against its reference, next to the ground truth's own figure) tells the two apart.
Recolouring (:mod:`data.protocol`) is the cross-reference setting with a known answer: the reference's hues and the
ground truth's are turned together and the reference is mirrored, so PSNR against the turned ground truth rewards
following the reference by content, and neither a paste nor the data set's usual colours score (``original_colours``:
the untouched image scored against the turned one). The baselines are the input reference itself and the sketch
shown as a gray image: a model that does not beat them has learnt nothing from the inputs.
When the folder holds the multi-reference setting (``test --model.test_settings`` with multi), ``metrics.json``
also has "multi": {"model", "best_single", "pasted", "single0".. : {psnr, ssim, flat_noise, flat_noise_target,
colour_distance, answer_colour_distance}, "target_colour_distance"}: the model given all K references, the best of
it given each one alone, the references' per-pixel mean, and the model given reference k alone, scored against the
turned ground truth; ``colour_distance`` is to the pixels of the K references pooled
(:func:`utils.metrics.pooled_colour_distance`), ``answer_colour_distance`` to the turned ground truth's.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from utils import metrics
from utils.errors import UserError, exit_on_user_error
from utils.eval_layout import (INPUT_FOLDERS, MULTI_FOLDERS, MULTI_OUTPUTS, MULTI_REFERENCE_KEYS, MULTI_SINGLES,
                               MULTI_TRUTH, SETTINGS, reference_folder, truth_folder)
from utils.images import OPAQUE, image_grid, load_rgb, load_with_alpha, save_image, to_tensor
from utils.pairs import iter_pair_batches, match_pairs

FOLDERS = (*SETTINGS, *INPUT_FOLDERS.values())
#: grid.png: a title band over the panels, which stand GAP pixels apart.
PANEL_TITLES = {"same": "same-reference", "cross": "cross-reference", "recolour": "recolouring (turned answer)"}
HEADER, GAP = 16, 8


def paired_scores(real_dir: Path, fake_dir: Path) -> dict[str, float]:
    """Mean PSNR, SSIM and flat-region noise (:func:`utils.metrics.flat_noise`, with the target's own figure) of the
    images of ``fake_dir`` against their namesakes in ``real_dir``."""
    scores: dict[str, list[float]] = {"psnr": [], "ssim": [], "flat_noise": [], "flat_noise_target": []}
    for _, real, fake in iter_pair_batches(match_pairs(real_dir, fake_dir), batch_size=64):
        scores["psnr"] += metrics.psnr(real, fake).tolist()
        scores["ssim"] += metrics.ssim(real, fake).tolist()
        noise, own = metrics.flat_noise(real, fake)
        keep = torch.isfinite(noise)
        scores["flat_noise"] += noise[keep].tolist()
        scores["flat_noise_target"] += own[keep].tolist()
    return {key: metrics.summarize(values)["mean"] for key, values in scores.items()}


def colour_scores(reference_dir: Path, fake_dir: Path) -> float:
    """Mean colour distance of the images of ``fake_dir`` to their namesakes in ``reference_dir``."""
    values: list[float] = []
    for _, reference, fake in iter_pair_batches(match_pairs(reference_dir, fake_dir), batch_size=64):
        values += metrics.colour_distance(reference, fake).tolist()
    return metrics.summarize(values)["mean"]


def multi_scores(outputs: Path) -> dict:
    """The multi-reference setting's outputs and baselines against the turned ground truth, with their colour
    distance to the pooled references (and the ground truth's own)."""
    truth = outputs / MULTI_FOLDERS[MULTI_TRUTH]
    names = [pair.name for pair in match_pairs(truth, truth)]

    def load(folder: Path, reader=load_rgb) -> torch.Tensor:  # uint8 (N, C, H, W)
        return torch.stack([torch.from_numpy(reader(folder / f"{name}.png")).permute(2, 0, 1) for name in names])

    given = torch.stack([load(outputs / MULTI_FOLDERS[key], load_with_alpha) for key in MULTI_REFERENCE_KEYS], dim=1)
    references, shown = given[:, :, :3], given[:, :, 3] >= OPAQUE  # the pixels each reference shows

    answer = load(truth)

    def mean(values: torch.Tensor) -> float:
        return metrics.summarize(values.tolist())["mean"]

    def colours(images: torch.Tensor) -> dict[str, float]:
        """Colour distance to the pooled references, and to the answer's colours (alignment-free)."""
        return {"colour_distance": mean(metrics.pooled_colour_distance(references, images, shown)),
                "answer_colour_distance": mean(metrics.colour_distance(answer, images))}

    who = dict(zip(("model", "best_single", "pasted"), MULTI_OUTPUTS))
    who.update({f"single{k}": folder for k, folder in enumerate(MULTI_SINGLES) if (outputs / folder).is_dir()})
    scores = {name: {**paired_scores(truth, outputs / folder), **colours(load(outputs / folder))}
              for name, folder in who.items()}
    return {**scores, "target_colour_distance": colours(answer)["colour_distance"]}


def report(outputs: Path) -> dict:
    missing = [name for name in FOLDERS if not (outputs / name).is_dir()]
    if missing:
        raise UserError(f"{outputs} lacks {', '.join(missing)}; run `pretrain.py test` with this output folder first")
    gt = outputs / "gt"
    model = {key: {**paired_scores(outputs / truth_folder(key), outputs / key),
                   "colour_distance": colour_scores(outputs / reference_folder(key), outputs / key)}
             for key in SETTINGS}
    result = {
        "model": model,
        "target_colour_distance": {key: colour_scores(outputs / reference_folder(key), outputs / truth_folder(key))
                                   for key in SETTINGS},
        "cross_copy": {who: {k: v for k, v in paired_scores(outputs / "reference_cross", outputs / folder).items()
                             if k in ("psnr", "ssim")} for who, folder in (("model", "cross"), ("target", "gt"))},
        "baselines": {
            "reference": {key: paired_scores(outputs / truth_folder(key), outputs / reference_folder(key))
                          for key in SETTINGS},
            "gray_sketch": paired_scores(gt, outputs / "sketch"),
            "original_colours": {**paired_scores(outputs / "gt_recolour", gt),
                                 "colour_distance": colour_scores(outputs / "reference_recolour", gt)},
        },
    }
    if all((outputs / name).is_dir() for name in (*MULTI_OUTPUTS, *MULTI_FOLDERS.values())):
        result["multi"] = multi_scores(outputs)
    return result


def grid(outputs: Path, rows: int = 8) -> torch.Tensor:
    names = sorted(p.name for p in (outputs / "gt").glob("*.png"))[:rows]

    def stack(folder: str) -> torch.Tensor:
        return torch.stack([to_tensor(load_rgb(outputs / folder / n)) for n in names])

    sketch = stack("sketch")
    panels = [image_grid(sketch, stack(reference_folder(key)), stack(key), stack(truth_folder(key)), rows)
              for key in SETTINGS]
    gap = torch.ones(3, panels[0].shape[1], GAP)
    body = torch.cat([part for panel in panels for part in (panel, gap)][:-1], dim=2)
    header = np.full((HEADER, body.shape[2], 3), 255, np.uint8)
    for i, key in enumerate(SETTINGS):  # each panel's setting, over its first column
        cv2.putText(header, PANEL_TITLES[key], (i * (panels[0].shape[2] + GAP) + 4, HEADER - 6),
                    cv2.FONT_HERSHEY_SIMPLEX, 0.4, (0, 0, 0), 1, cv2.LINE_AA)
    return torch.cat([torch.from_numpy(header).permute(2, 0, 1).float() / 255, body], dim=1)


def _fmt(value: float | None, width: int, digits: int) -> str:
    """A table cell; n/a where the figure is undefined (flat-region noise of images without flat regions)."""
    return f"{'n/a':>{width}s}" if value is None else f"{value:{width}.{digits}f}"


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--outputs", type=Path, required=True, help="folder written by `pretrain.py test`")
    parser.add_argument("--out", type=Path, required=True, help="where metrics.json and grid.png go")
    args = parser.parse_args(argv)
    result = report(args.outputs)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "metrics.json").write_text(json.dumps(result, indent=2) + "\n")
    save_image(grid(args.outputs) * 2 - 1, args.out / "grid.png")
    rows = [("model", result["model"]["same"], result["model"]["cross"]),
            ("reference baseline", result["baselines"]["reference"]["same"],
             result["baselines"]["reference"]["cross"]),
            ("gray-sketch baseline", result["baselines"]["gray_sketch"], result["baselines"]["gray_sketch"])]
    print(f"{'':22s} {'PSNR same':>10s} {'PSNR cross':>10s} {'SSIM same':>10s} {'SSIM cross':>10s} "
          f"{'noise same':>10s} {'noise cross':>11s}")
    for name, same, cross in rows:
        print(f"{name:22s} {_fmt(same['psnr'], 10, 2)} {_fmt(cross['psnr'], 10, 2)} {_fmt(same['ssim'], 10, 4)} "
              f"{_fmt(cross['ssim'], 10, 4)} {_fmt(same['flat_noise'], 10, 1)} {_fmt(cross['flat_noise'], 11, 1)}")
    colours = result["model"]
    print(f"colour distance to the given reference (Delta E): same {colours['same']['colour_distance']:.1f}, "
          f"cross {colours['cross']['colour_distance']:.1f}; the targets' own: "
          f"same {result['target_colour_distance']['same']:.1f}, cross {result['target_colour_distance']['cross']:.1f}")
    base = result["baselines"]

    def scored(s: dict) -> str:
        colour = f" / {s['colour_distance']:.1f}" if "colour_distance" in s else ""
        return f"{s['psnr']:.2f} / {s['ssim']:.3f}{colour}"

    print(f"recolouring (known answer; PSNR / SSIM against the turned ground truth, colour distance to the reference): "
          f"{scored(result['model']['recolour'])}; the original colours: {scored(base['original_colours'])}; "
          f"the mirrored reference itself: {scored(base['reference']['recolour'])}")
    if "multi" in result:
        multi = result["multi"]
        print(f"multi-reference (known answer; PSNR / SSIM, colour distance to the pooled references): all "
              f"references {scored(multi['model'])}; the best single one {scored(multi['best_single'])}; "
              f"their mean pasted {scored(multi['pasted'])}; colour distance to the answer: all "
              f"{multi['model']['answer_colour_distance']:.1f}, best single "
              f"{multi['best_single']['answer_colour_distance']:.1f}")
    copy = result["cross_copy"]
    print(f"cross outputs against their reference (PSNR / SSIM; higher = a paste of it): "
          f"{copy['model']['psnr']:.2f} / {copy['model']['ssim']:.3f}; the targets' own: "
          f"{copy['target']['psnr']:.2f} / {copy['target']['ssim']:.3f}")
    target = result["model"]["same"]["flat_noise_target"]
    print(f"flat-region noise: mean |Laplacian| in the target's flat regions (8-bit units); the target's own: "
          f"{_fmt(target, 0, 1)}")
    print(f"wrote {args.out / 'metrics.json'} and {args.out / 'grid.png'}")


if __name__ == "__main__":
    main()
