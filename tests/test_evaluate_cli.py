"""The evaluation entry points on tiny folders of real anime faces: as subprocesses (what a user types) and, where
only the behaviour matters, in-process through ``main`` to keep the suite fast."""
from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

import evaluate_FID
import evaluate_SSIM_PSNR
from utils.images import list_images

ROOT = Path(__file__).resolve().parents[1]
TEST_IMAGES = ROOT.parent / "shared" / "data" / "anime_faces_128" / "test"
NUM_IMAGES = 4


@pytest.fixture(scope="module")
def folders(tmp_path_factory) -> dict[str, Path]:
    """real/ (4 real faces), results/jpeg/{same,cross} (JPEG-recompressed copies; one same image at 256 px) and
    empty caches."""
    if not TEST_IMAGES.is_dir():
        pytest.skip(f"real test images not found at {TEST_IMAGES} (the shared data folder next to the repository)")
    base = tmp_path_factory.mktemp("evaluate")
    paths = {name: base / name for name in ("real", "same", "cross", "torch", "cache", "json")}
    paths["same"], paths["cross"] = base / "results" / "jpeg" / "same", base / "results" / "jpeg" / "cross"
    for folder in paths.values():
        folder.mkdir(parents=True)
    for i, source in enumerate(list_images(TEST_IMAGES)[:NUM_IMAGES]):
        shutil.copy(source, paths["real"] / source.name)
        image = Image.open(source).convert("RGB")
        (image.resize((256, 256), Image.Resampling.BICUBIC) if i == 0 else image).save(
            paths["same"] / f"{source.stem}.jpg", quality=40
        )
        image.save(paths["cross"] / f"{source.stem}.png")  # lossless: a perfect result
    return paths


def run(script: str, *args: str | Path, folders: dict[str, Path]) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TORCH_HOME=str(folders["torch"]), XDG_CACHE_HOME=str(folders["cache"]))
    return subprocess.run(
        [sys.executable, str(ROOT / script), *map(str, args)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )


def _one_line_error(stderr: str) -> str:
    lines = [line for line in stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), stderr
    return lines[0]


def test_folder_against_itself_gives_infinite_psnr_and_unit_ssim(folders):
    out = folders["json"] / "self.json"
    result = run("evaluate_SSIM_PSNR.py", "--real", folders["real"], "--fake", folders["real"], "--json", out,
                 folders=folders)
    assert result.returncode == 0, result.stderr
    assert re.search(r"PSNR \(dB\) +inf", result.stdout) and re.search(r"SSIM +1\.0000", result.stdout)
    assert re.search(r"MS-SSIM +n/a +MS-SSIM needs images of at least 176 px", result.stdout)
    saved = json.loads(out.read_text())
    assert saved["num_pairs"] == NUM_IMAGES and saved["metrics"]["psnr"]["mean"] == math.inf
    assert saved["metrics"]["ssim"]["mean"] == pytest.approx(1.0, abs=1e-5)
    assert saved["metrics"]["ms_ssim"]["mean"] is None and "128x128" in saved["metrics"]["ms_ssim"]["unavailable"]


def test_missing_and_extra_names_stop_with_one_line(folders, tmp_path):
    fake = tmp_path / "fake"
    shutil.copytree(folders["cross"], fake)
    first = sorted(fake.iterdir())[0]
    first.rename(fake / "unexpected.png")
    result = run("evaluate_SSIM_PSNR.py", "--real", folders["real"], "--fake", fake, folders=folders)
    assert result.returncode == 2 and result.stdout == ""
    line = _one_line_error(result.stderr)
    assert first.stem in line and "unexpected" in line


def test_size_mismatch_needs_resize(folders, capsys):
    with pytest.raises(SystemExit) as exit_info:
        evaluate_SSIM_PSNR.main(["--real", str(folders["real"]), "--fake", str(folders["same"])])
    assert exit_info.value.code == 2
    assert "differ in size" in _one_line_error(capsys.readouterr().err)


def test_resized_jpeg_results_with_lpips(folders, capsys):
    out = folders["json"] / "jpeg_same.pairs.json"
    evaluate_SSIM_PSNR.main(
        ["--real", str(folders["real"]), "--fake", str(folders["same"]), "--resize", "--test-random-lpips",
         "--json", str(out)]
    )
    assert "1 resized" in capsys.readouterr().out
    saved = json.loads(out.read_text())
    psnr, ssim, lpips = (saved["metrics"][key] for key in ("psnr", "ssim", "lpips"))
    assert 20 < psnr["mean"] < 45 and psnr["std"] > 0 and 0.5 < ssim["mean"] < 1 and lpips["mean"] > 0
    assert saved["resized"] == 1 and saved["lpips"] == "random-init (test only)"
    assert len(saved["per_image"]) == NUM_IMAGES


def test_fid_of_folder_against_itself_is_zero_and_real_features_are_cached(folders, capsys):
    common = ["--test-random-inception", "--dims", "64", "--batch-size", "4", "--cache-dir", str(folders["cache"])]
    first = run("evaluate_FID.py", "--real", folders["real"], "--fake", folders["real"], *common,
                "--json", folders["json"] / "self.fid.json", folders=folders)
    assert first.returncode == 0, first.stderr
    assert "features computed and cached in" in first.stdout
    assert "biased" in first.stderr and "randomly initialised Inception" in first.stderr
    self_fid = json.loads((folders["json"] / "self.fid.json").read_text())["metrics"]
    assert abs(self_fid["fid"]) < 1e-3 and self_fid["kid_std"] is None

    evaluate_FID.main(["--real", str(folders["real"]), "--fake", str(folders["same"]), *common,
                       "--json", str(folders["json"] / "jpeg_same.fid.json")])
    assert "features reused from" in capsys.readouterr().out
    assert json.loads((folders["json"] / "jpeg_same.fid.json").read_text())["metrics"]["fid"] > 1e-3


def test_fid_without_inception_weights_is_one_line(folders):
    result = run("evaluate_FID.py", "--real", folders["real"], "--fake", folders["real"], folders=folders)
    assert result.returncode == 2
    line = _one_line_error(result.stderr)
    assert "weights-inception-2015-12-05-6726825d.pth" in line and str(folders["torch"]) in line


def test_paper_table_from_result_files(folders, capsys, tmp_path):
    for setting in ("same", "cross"):
        evaluate_SSIM_PSNR.main(["--real", str(folders["real"]), "--fake", str(folders[setting]), "--resize",
                                 "--json", str(tmp_path / f"{setting}.pairs.json")])
    evaluate_FID.main(["--real", str(folders["real"]), "--fake", str(folders["cross"]), "--test-random-inception",
                       "--dims", "64", "--cache-dir", str(tmp_path / "cache"),
                       "--json", str(tmp_path / "cross.fid.json")])
    capsys.readouterr()
    evaluate_SSIM_PSNR.main(["--markdown", str(tmp_path)])
    table = capsys.readouterr().out
    header, rule, row, blank, *notes = table.splitlines()
    assert header.startswith(
        "| Method | PSNR ↑ (Same / Cross) | MS-SSIM ↑ (Same / Cross) | FID ↓ (Same / Cross) |"
    )
    method, psnr, ms_ssim, fid = row.strip("| ").split(" | ")[:4]
    assert method == "jpeg" and psnr.endswith(" / inf") and ms_ssim == "n/a / n/a" and fid.startswith("– / ")
    assert any("MS-SSIM needs images of at least 176 px" in note for note in notes)
    assert any("randomly initialised Inception" in note for note in notes)


def test_colour_distance_to_the_given_reference(folders, tmp_path, capsys):
    """--reference: a generated image that is its reference mirrored scores 0; the real faces score > 0 against
    other faces given as references."""
    reals = sorted(folders["real"].iterdir())
    mirrored, others = tmp_path / "mirrored", tmp_path / "others"
    mirrored.mkdir()
    others.mkdir()
    for i, real in enumerate(reals):
        with Image.open(real) as image:
            image.convert("RGB").transpose(Image.Transpose.FLIP_LEFT_RIGHT).save(mirrored / f"{real.stem}.png")
        shutil.copy(reals[(i + 1) % len(reals)], others / real.name)
    for fake, reference in ((mirrored, folders["real"]), (folders["real"], others)):
        evaluate_SSIM_PSNR.main(["--real", str(folders["real"]), "--fake", str(fake), "--reference", str(reference),
                                 "--json", str(tmp_path / f"{fake.name}.json")])
    capsys.readouterr()
    same = json.loads((tmp_path / "mirrored.json").read_text())["metrics"]["colour_distance"]
    cross = json.loads((tmp_path / "real.json").read_text())["metrics"]["colour_distance"]
    assert same["mean"] == pytest.approx(0, abs=1e-6) and same["n"] == NUM_IMAGES
    assert cross["mean"] > 5
    # the copy figures: a paste of the reference scores far above an image that only shares its colours
    evaluate_SSIM_PSNR.main(["--real", str(folders["real"]), "--fake", str(others), "--reference", str(others),
                             "--json", str(tmp_path / "paste.json")])
    assert "PSNR to reference (copy)" in capsys.readouterr().out
    paste = json.loads((tmp_path / "paste.json").read_text())["metrics"]
    own = json.loads((tmp_path / "real.json").read_text())["metrics"]
    assert paste["reference_psnr"]["mean"] > own["reference_psnr"]["mean"] + 20
    assert paste["reference_ssim"]["mean"] == pytest.approx(1) and own["reference_ssim"]["mean"] < 0.9
