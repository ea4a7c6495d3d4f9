"""The whole evaluation path on a tiny trained checkpoint, as the README tells a user to run it:

    data.prepare -> colorize.py (same and cross references) -> evaluate_SSIM_PSNR.py and evaluate_FID.py -> table

colorize.py runs once as a subprocess (the command a user types); the other steps call their CLIs' ``main`` with
the same arguments in-process, which keeps the suite within its time budget."""
from __future__ import annotations

import json
import shutil

import pytest
from PIL import Image

import colorize
import evaluate_FID
import evaluate_SSIM_PSNR
from data import prepare
from utils.images import list_images

pytest_plugins = ["conftest_ckpt"]
pytestmark = pytest.mark.usefixtures("one_thread")
NUM_IMAGES = 6


def test_prepare_colorize_evaluate(tiny_model, python_subprocess, tmp_path, capsys):
    src, test, results = tmp_path / "src", tmp_path / "test", tmp_path / "results"
    src.mkdir()
    for face in list_images(tiny_model.faces)[:NUM_IMAGES]:
        shutil.copy(face, src / face.name)
    prepare.main(["--src", str(src), "--out", str(test), "--size", str(tiny_model.size)])
    names = sorted(p.name for p in (test / "gt").iterdir())
    assert len(names) == NUM_IMAGES

    common = ["--checkpoint", tiny_model.checkpoint, "--sketch", test / "sketch", "--device", "cpu", "--seed", "0"]
    same = python_subprocess("colorize.py", *common, "--reference", test / "reference_same",
                             "--out", results / "ours" / "same")
    assert same.returncode == 0, same.stderr
    assert f"wrote {NUM_IMAGES} image(s)" in same.stdout and "Traceback" not in same.stderr
    colorize.main([*map(str, common), "--reference", str(test / "reference_cross"), "--out",
                   str(results / "ours" / "cross")])
    for setting in ("same", "cross"):
        assert sorted(p.name for p in (results / "ours" / setting).iterdir()) == names
        with Image.open(results / "ours" / setting / names[0]) as img:
            assert img.size == (tiny_model.size, tiny_model.size)

    fid_options = ["--test-random-inception", "--dims", "64", "--batch-size", str(NUM_IMAGES), "--kid-subsets", "2",
                   "--cache-dir", str(tmp_path / "cache")]
    for setting in ("same", "cross"):
        fake, stem = results / "ours" / setting, results / "json" / f"ours_{setting}"
        evaluate_SSIM_PSNR.main(["--real", str(test / "gt"), "--fake", str(fake), "--json", f"{stem}.pairs.json",
                                 "--device", "cpu"])
        evaluate_FID.main(["--real", str(test / "gt"), "--fake", str(fake), "--json", f"{stem}.fid.json",
                           "--device", "cpu", *fid_options])
        pairs = json.loads((results / "json" / f"ours_{setting}.pairs.json").read_text())
        assert pairs["num_pairs"] == NUM_IMAGES and sorted(pairs["per_image"]) == [n[:-4] for n in names]
        assert pairs["metrics"]["psnr"]["mean"] > 0 and 0 < pairs["metrics"]["ssim"]["mean"] <= 1
        fid = json.loads((results / "json" / f"ours_{setting}.fid.json").read_text())
        assert fid["num_fake"] == NUM_IMAGES and fid["metrics"]["fid"] is not None

    capsys.readouterr()
    evaluate_SSIM_PSNR.main(["--markdown", str(results / "json")])
    table = capsys.readouterr().out
    assert "ours" in table and "PSNR" in table
