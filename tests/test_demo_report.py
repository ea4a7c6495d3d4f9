"""apps.demo_report on test folders whose answers are known: a paste of the cross reference against an output
that ignores it."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from apps import demo_report


def _folders(root, cross_from: str, recolour_from: str = "gt_recolour", multi: bool = False):
    rng = np.random.default_rng(0)
    images = {key: [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(4)]
              for key in ("gt", "reference_cross")}
    images["reference_same"] = images["gt"]
    images["same"] = images["gt"]
    # a stand-in for a hue turn: the channels of a reddish copy of the image, permuted
    images["gt_recolour"] = [(img * [0.4, 0.2, 1.0]).astype(np.uint8)[:, :, [2, 0, 1]] for img in images["gt"]]
    images["reference_recolour"] = [img[:, ::-1] for img in images["gt_recolour"]]
    images["recolour"] = images[recolour_from]
    images["sketch"] = [np.repeat(img.mean(2, keepdims=True).astype(np.uint8), 3, 2) for img in images["gt"]]
    # the cross outputs: the reference with a little noise (a paste), or the ground truth (ignores the reference)
    images["cross"] = [np.clip(img.astype(int) + rng.integers(-3, 4, img.shape), 0, 255).astype(np.uint8)
                       for img in images[cross_from]]
    if multi:  # the answer: red, green and blue bands; each reference one band zoomed to the full image
        bands = np.repeat(np.array([[200, 30, 30], [30, 200, 30], [30, 30, 200]], np.uint8), [11, 11, 10], axis=0)
        images["gt_multi"] = [np.clip(bands[:, None] + rng.integers(0, 20, (32, 32, 3)), 0, 255).astype(np.uint8)
                              for _ in range(4)]
        for k in range(3):
            rows = k * 11 + np.arange(32) * 10 // 32
            images[f"reference_multi{k}"] = [img[rows] for img in images["gt_multi"]]
        images["multi"] = images["gt_multi"]
        images["multi_best_single"] = images["reference_multi0"]
        images["multi_pasted"] = [np.mean([images[f"reference_multi{k}"][i] for k in range(3)], axis=0)
                                  .round().astype(np.uint8) for i in range(4)]
    for folder, arrays in images.items():
        (root / folder).mkdir(parents=True)
        for i, arr in enumerate(arrays):
            Image.fromarray(arr).save(root / folder / f"{i:02d}.png")
    return root


def test_a_paste_of_the_cross_reference_is_told_apart(tmp_path, capsys):
    results = {}
    for kind in ("reference_cross", "gt"):
        outputs = _folders(tmp_path / kind, kind)
        demo_report.main(["--outputs", str(outputs), "--out", str(tmp_path / f"report_{kind}")])
        results[kind] = json.loads((tmp_path / f"report_{kind}" / "metrics.json").read_text())
    paste, ignore = results["reference_cross"], results["gt"]
    # the colour distance alone scores the paste as a perfect transfer ...
    assert paste["model"]["cross"]["colour_distance"] < 2 < ignore["model"]["cross"]["colour_distance"]
    # ... the copy figure shows it is a copy: far above the targets' own, where the ignoring output sits
    assert paste["cross_copy"]["model"]["psnr"] > paste["cross_copy"]["target"]["psnr"] + 20
    assert ignore["cross_copy"]["model"]["psnr"] == pytest.approx(ignore["cross_copy"]["target"]["psnr"], abs=0.2)
    assert "a paste of it" in capsys.readouterr().out


def test_recolouring_is_scored_against_the_turned_ground_truth(tmp_path, capsys):
    results = {}
    for kind in ("gt_recolour", "gt"):  # follows the reference's colours, or keeps the image's own
        outputs = _folders(tmp_path / kind, "gt", recolour_from=kind)
        demo_report.main(["--outputs", str(outputs), "--out", str(tmp_path / f"report_{kind}")])
        results[kind] = json.loads((tmp_path / f"report_{kind}" / "metrics.json").read_text())
    follows, keeps = results["gt_recolour"]["model"]["recolour"], results["gt"]["model"]["recolour"]
    assert follows["psnr"] == float("inf") and follows["colour_distance"] < 1
    assert keeps["psnr"] == pytest.approx(results["gt"]["baselines"]["original_colours"]["psnr"])
    assert keeps["colour_distance"] > 10 and "multi" not in results["gt"]  # no multi-reference folders
    assert "recolouring (known answer" in capsys.readouterr().out
    with Image.open(tmp_path / "report_gt" / "grid.png") as grid:
        width, height = grid.size  # a title band over three square panels (4 rows of sketch | reference | output |
        assert width == 3 * (height - demo_report.HEADER) + 2 * demo_report.GAP  # target), GAP px apart


def test_the_multi_reference_setting_is_reported_when_its_folders_exist(tmp_path, capsys):
    outputs = _folders(tmp_path / "multi", "gt", multi=True)
    demo_report.main(["--outputs", str(outputs), "--out", str(tmp_path / "report")])
    multi = json.loads((tmp_path / "report" / "metrics.json").read_text())["multi"]
    assert set(multi) == {"model", "best_single", "pasted", "target_colour_distance"}  # no single-k folders here
    assert multi["model"]["psnr"] == float("inf") and multi["pasted"]["psnr"] < 15 > multi["best_single"]["psnr"]
    # pooled colours: the answer holds every reference's colours; one band, or their mean (grey), does not
    assert multi["target_colour_distance"] == multi["model"]["colour_distance"] < 5
    assert min(multi["best_single"]["colour_distance"], multi["pasted"]["colour_distance"]) > 30
    # colours against the answer: the model's output is the answer (0); a single band is far from it
    assert multi["model"]["answer_colour_distance"] == 0 < multi["best_single"]["answer_colour_distance"]
    assert "multi-reference (known answer" in capsys.readouterr().out


def test_a_folder_without_the_test_layout_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        demo_report.main(["--outputs", str(tmp_path), "--out", str(tmp_path / "r")])
    message = capsys.readouterr().err.strip().splitlines()
    assert err.value.code != 0 and len(message) == 1 and "lacks" in message[0]
