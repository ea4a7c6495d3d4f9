"""apps.demo_report on test folders whose answers are known: a paste of the cross reference against an output
that ignores it."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from apps import demo_report


def _folders(root, cross_from: str):
    rng = np.random.default_rng(0)
    images = {key: [rng.integers(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(4)]
              for key in ("gt", "reference_cross")}
    images["reference_same"] = images["gt"]
    images["same"] = images["gt"]
    images["sketch"] = [np.repeat(img.mean(2, keepdims=True).astype(np.uint8), 3, 2) for img in images["gt"]]
    # the cross outputs: the reference with a little noise (a paste), or the ground truth (ignores the reference)
    images["cross"] = [np.clip(img.astype(int) + rng.integers(-3, 4, img.shape), 0, 255).astype(np.uint8)
                       for img in images[cross_from]]
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


def test_a_folder_without_the_test_layout_is_one_line(tmp_path, capsys):
    with pytest.raises(SystemExit) as err:
        demo_report.main(["--outputs", str(tmp_path), "--out", str(tmp_path / "r")])
    message = capsys.readouterr().err.strip().splitlines()
    assert err.value.code != 0 and len(message) == 1 and "lacks" in message[0]
