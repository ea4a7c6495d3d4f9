"""colorize.py on a tiny trained checkpoint: overwrite protection, determinism, colour-to-sketch conversion, one
reference for many sketches, pairing by name, original sizes, trajectory grids, several seeds, an output file, the
sampler grid and one-line errors.

The runs call ``colorize.main`` in-process (Lightning is imported once); tests/test_end_to_end.py runs the script as a
subprocess, as a user types it."""
from __future__ import annotations

import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

import colorize
from utils.xdog import XDoGParams, xdog
from utils.images import list_images, load_rgb
from utils.errors import UserError
from apps.colorize_jobs import check_outputs, parse_seeds, plan_jobs
from apps.colorize_inputs import Letterbox, looks_like_sketch, prepare_sketch, trajectory_steps

pytest_plugins = ["conftest_ckpt"]
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def inputs(tiny_model, tmp_path_factory) -> dict[str, Path]:
    """sketches/ (three XDoG sketches of faces at 32 px, one in a sub-folder), references/ (colour faces paired by
    name), a colour face, a wide colour face (40 x 24) and its XDoG sketch."""
    base = tmp_path_factory.mktemp("colorize_inputs")
    faces = list_images(tiny_model.faces)
    paths = {"sketches": base / "sketches", "references": base / "references", "face": base / "face.png",
             "wide": base / "wide.png", "wide_sketch": base / "wide_sketch.png"}
    for i, name in enumerate(["a", "b", "sub/c"]):
        rgb = cv2.resize(load_rgb(faces[i]), (32, 32), interpolation=cv2.INTER_CUBIC)
        for folder, array in (("sketches", xdog(rgb, 0.4)), ("references", load_rgb(faces[10 + i]))):
            (paths[folder] / name).parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(array).save(paths[folder] / f"{name}.png")
    shutil.copy(faces[5], paths["face"])
    wide = cv2.resize(load_rgb(faces[6]), (40, 24), interpolation=cv2.INTER_CUBIC)
    Image.fromarray(wide).save(paths["wide"])
    Image.fromarray(xdog(wide, 0.4)).save(paths["wide_sketch"])
    return paths


def run(tiny_model, sketch, reference, out, *options) -> None:
    colorize.main(["--checkpoint", str(tiny_model.checkpoint), "--sketch", str(sketch), "--reference", str(reference),
                   "--out", str(out), "--device", "cpu", *map(str, options)])


def error_line(capsys, excinfo) -> str:
    assert excinfo.value.code == 2
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip() and "colorize:" not in line]
    assert len(lines) == 1 and lines[0].startswith("error: "), lines
    return lines[0]


def files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*.png"))}


def test_one_reference_for_many_sketches_names_outputs_after_sketches(tiny_model, inputs, tmp_path, capsys):
    run(tiny_model, inputs["sketches"], inputs["face"], tmp_path / "out", "--batch-size", 2)
    assert sorted(files(tmp_path / "out")) == ["a.png", "b.png", "sub/c.png"]
    for path in (tmp_path / "out").rglob("*.png"):
        with Image.open(path) as img:
            assert (img.mode, img.size) == ("RGB", (32, 32))
    out = capsys.readouterr()
    assert "wrote 3 image(s)" in out.out and "16x16 px (the checkpoint's training size)" in out.out
    assert "XDoG" not in out.err  # XDoG sketches are detected as sketches


def test_deterministic_for_a_seed_and_different_across_seeds(tiny_model, inputs, tmp_path):
    for out, seed in (("first", 3), ("again", 3), ("other", 4)):
        run(tiny_model, inputs["sketches"], inputs["references"], tmp_path / out, "--seed", seed, "--sampler", "euler")
    first, again, other = (files(tmp_path / name) for name in ("first", "again", "other"))
    assert first == again
    assert sorted(first) == sorted(other) and all(first[name] != other[name] for name in first)


def test_ssim_guidance_changes_the_output_and_zero_is_off(tiny_model, inputs, tmp_path, capsys):
    for out, scale in (("plain", None), ("zero", 0), ("guided", 30)):
        extra = ("--guidance-ssim", scale) if scale is not None else ()
        run(tiny_model, inputs["sketches"], inputs["references"], tmp_path / out, "--sampler", "euler", *extra)
    plain, zero, guided = (files(tmp_path / name) for name in ("plain", "zero", "guided"))
    assert zero == plain
    assert sorted(guided) == sorted(plain) and all(guided[name] != plain[name] for name in plain)
    with pytest.raises(SystemExit) as excinfo:
        run(tiny_model, inputs["sketches"], inputs["references"], tmp_path / "negative", "--guidance-ssim", -1)
    assert "--guidance-ssim must be >= 0" in error_line(capsys, excinfo)


def test_realism_and_noise_start_change_the_output_and_are_off_at_their_neutral_values(tiny_model, inputs, tmp_path,
                                                                                       capsys):
    runs = {"plain": (), "realism0": ("--realism", 0), "realism": ("--realism", 1),
            "start_max": ("--sigma-start", 80), "start": ("--sigma-start", 0.5, "--init", "flat"),
            "start_file": ("--sigma-start", 0.5, "--init", inputs["face"])}
    for out, extra in runs.items():
        run(tiny_model, inputs["sketches"], inputs["references"], tmp_path / out, "--sampler", "euler", *extra)
    got = {name: files(tmp_path / name) for name in runs}
    assert got["realism0"] == got["plain"] and got["start_max"] == got["plain"]
    for name in ("realism", "start", "start_file"):
        assert sorted(got[name]) == sorted(got["plain"]) and all(got[name][k] != got["plain"][k] for k in got[name])
    assert got["start"] != got["start_file"]
    for bad, message in ((("--realism", 2), "--realism must be in [0, 1]"),
                         (("--sigma-start", 0), "--sigma-start must be positive"),
                         (("--sigma-start", 1, "--init", tmp_path / "none.png"), "--init"),
                         (("--sigma-start", 1, "--init", "warp"), "has no correspondence warp")):
        with pytest.raises(SystemExit) as excinfo:
            run(tiny_model, inputs["sketches"], inputs["references"], tmp_path / "bad", *bad)
        assert message in error_line(capsys, excinfo)
    assert not (tmp_path / "bad").exists()


def test_refuses_to_overwrite_before_any_work(tiny_model, inputs, tmp_path, capsys):
    out = tmp_path / "out"
    run(tiny_model, inputs["sketches"], inputs["face"], out, "--seed", 1)
    before = files(out)
    with pytest.raises(SystemExit) as excinfo:  # a missing checkpoint would be the next error: nothing was loaded
        colorize.main(["--checkpoint", str(tmp_path / "missing.ckpt"), "--sketch", str(inputs["sketches"]),
                       "--reference", str(inputs["face"]), "--out", str(out), "--seed", "2"])
    line = error_line(capsys, excinfo)
    assert "3 output file(s) exist already" in line and "a.png" in line and "--overwrite" in line
    assert files(out) == before
    run(tiny_model, inputs["sketches"], inputs["face"], out, "--seed", 2, "--overwrite")
    assert files(out).keys() == before.keys() and files(out) != before


def test_colour_image_as_sketch_is_turned_into_a_sketch(tiny_model, inputs, tmp_path, capsys):
    face, ref = inputs["face"], inputs["wide"]
    assert not looks_like_sketch(load_rgb(face))
    for mode in ("auto", "image", "sketch"):
        run(tiny_model, face, ref, tmp_path / mode, "--sketch-type", mode)
    assert "1 colour image(s) given as sketches were turned into sketches with XDoG (face)" in capsys.readouterr().err
    auto, image, raw = (files(tmp_path / mode)["face.png"] for mode in ("auto", "image", "sketch"))
    assert auto == image and auto != raw
    prepared = prepare_sketch(face, 16, XDoGParams())
    assert prepared.converted and set(np.unique(prepared.sketch)) <= {0, 255}


def test_output_keeps_the_size_of_a_non_square_input(tiny_model, inputs, tmp_path):
    run(tiny_model, inputs["wide_sketch"], inputs["face"], tmp_path / "out")
    run(tiny_model, inputs["wide"], inputs["face"], tmp_path / "out32", "--size", 32)
    for path in (tmp_path / "out" / "wide_sketch.png", tmp_path / "out32" / "wide.png"):
        with Image.open(path) as img:
            assert (img.mode, img.size) == ("RGB", (40, 24))


def test_trajectory_grid_is_written_outside_the_output_folder(tiny_model, inputs, tmp_path):
    run(tiny_model, inputs["sketches"], inputs["references"], tmp_path / "out", "--save-trajectory")
    assert sorted(files(tmp_path / "out")) == ["a.png", "b.png", "sub/c.png"]
    grids = files(tmp_path / "out_trajectory")
    assert sorted(grids) == ["a.png", "b.png", "sub/c.png"]
    with Image.open(tmp_path / "out_trajectory" / "a.png") as grid:
        # two rows (sketch + states, reference + x0 predictions) of 1 + 3 tiles of 16 px with 2 px padding
        assert grid.size == (2 + 4 * 18, 2 + 2 * 18)
        bottom_right = np.asarray(grid)[20:36, 56:72]
    with Image.open(tmp_path / "out" / "a.png") as out:  # the last x0 prediction is the output (at 16 px here)
        final = np.asarray(out.resize((16, 16), Image.Resampling.BOX))
    assert np.abs(bottom_right.astype(int) - final.astype(int)).mean() < 40
    assert trajectory_steps(50, 10)[-1] == 49 and len(trajectory_steps(50, 10)) == 10
    assert trajectory_steps(3, 10) == [0, 1, 2]


def test_reference_folder_must_hold_every_sketch_name(tiny_model, inputs, tmp_path, capsys):
    references = tmp_path / "references"
    shutil.copytree(inputs["references"], references)
    (references / "b.png").unlink()
    (references / "sub" / "c.png").unlink()
    with pytest.raises(SystemExit) as excinfo:
        run(tiny_model, inputs["sketches"], references, tmp_path / "out")
    line = error_line(capsys, excinfo)
    assert "no file for 2 of 3 images (b, sub/c)" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("problem", ["unreadable", "empty_folder", "missing_sketch", "bad_checkpoint"])
def test_bad_input_is_one_line(tiny_model, inputs, tmp_path, capsys, problem):
    sketch, reference, checkpoint = inputs["sketches"], inputs["face"], tiny_model.checkpoint
    if problem == "unreadable":
        sketch = tmp_path / "sketches"
        shutil.copytree(inputs["sketches"], sketch)
        (sketch / "b.png").write_bytes(b"not a png")
    elif problem == "empty_folder":
        sketch = tmp_path / "empty"
        sketch.mkdir()
    elif problem == "missing_sketch":
        sketch = tmp_path / "nothing.png"
    else:
        checkpoint = tmp_path / "broken.ckpt"
        checkpoint.write_bytes(b"garbage")
    with pytest.raises(SystemExit) as excinfo:
        colorize.main(["--checkpoint", str(checkpoint), "--sketch", str(sketch), "--reference", str(reference),
                       "--out", str(tmp_path / "out")])
    line = error_line(capsys, excinfo)
    expected = {"unreadable": "b.png", "empty_folder": "contains no images", "missing_sketch": "does not exist",
                "bad_checkpoint": "not a loadable checkpoint"}[problem]
    assert expected in line
    assert not any((tmp_path / "out").rglob("*.png"))


def test_sketch_rule_and_letterbox():
    rng = np.random.default_rng(0)
    lines = np.full((32, 48), 255, np.uint8)
    lines[10:12, 5:40] = 0
    assert looks_like_sketch(lines) and looks_like_sketch(np.dstack([lines] * 3))
    assert not looks_like_sketch(np.full((32, 48), 90, np.uint8))  # a dark grayscale photo: not mostly white
    dense = np.where(rng.random((32, 48)) < 0.4, 255, 0).astype(np.uint8)
    assert looks_like_sketch(dense)  # 40 % white, but black-and-white: line art
    grey = lines.copy()
    grey[:12] = 150
    assert not looks_like_sketch(grey)  # mostly white, but 37 % mid-grey: a photo
    colour = rng.integers(0, 256, (32, 48, 3), dtype=np.uint8)
    assert not looks_like_sketch(colour)
    box = Letterbox(24, 40, 16)
    square = box.forward(np.zeros((24, 40, 3), np.uint8), border="white")
    assert square.shape == (16, 16, 3) and square[0, 8].min() == 255 and square[8, 8].max() == 0
    back = box.inverse(square)
    assert back.shape == (24, 40, 3) and back.mean() < 20  # the white padding is cut away
    same = Letterbox(16, 16, 16)
    assert np.array_equal(same.inverse(colour[:16, :16]), colour[:16, :16])


def test_outputs_never_replace_inputs(inputs):
    jobs = plan_jobs(inputs["face"], inputs["face"], inputs["face"].parent)
    with pytest.raises(UserError, match="would replace input files"):
        check_outputs(jobs, overwrite=True)


def test_seeds_write_one_file_per_seed_each_the_file_of_that_single_seed(tiny_model, inputs, tmp_path):
    run(tiny_model, inputs["sketches"], inputs["references"], tmp_path / "many", "--seeds", "0-1,5", "--batch-size", 2)
    many = files(tmp_path / "many")
    assert sorted(many) == sorted(f"{name}_seed{s}.png" for name in ("a", "b", "sub/c") for s in (0, 1, 5))
    for seed in (1, 5):
        run(tiny_model, inputs["sketches"], inputs["references"], tmp_path / f"one{seed}", "--seed", seed,
            "--batch-size", 2)
        one = files(tmp_path / f"one{seed}")
        assert {name: many[name.replace(".png", f"_seed{seed}.png")] for name in one} == one
    assert many["a_seed0.png"] != many["a_seed1.png"] != many["a_seed5.png"]


def test_out_file_for_one_sketch_is_exactly_that_file(tiny_model, inputs, tmp_path, capsys):
    sketch = inputs["sketches"] / "a.png"
    run(tiny_model, sketch, inputs["face"], tmp_path / "face.png", "--seed", 3)
    run(tiny_model, sketch, inputs["face"], tmp_path / "face.png", "--seeds", "3,4")
    assert sorted(files(tmp_path)) == ["face.png", "face_seed3.png", "face_seed4.png"]
    assert files(tmp_path)["face.png"] == files(tmp_path)["face_seed3.png"] != files(tmp_path)["face_seed4.png"]
    run(tiny_model, sketch, inputs["face"], tmp_path / "folder", "--seed", 3)
    assert files(tmp_path / "folder")["a.png"] == files(tmp_path)["face.png"]  # the same sample as in a folder
    before = files(tmp_path)["face.png"]
    for out, extra, message in ((tmp_path / "face.png", (), "1 output file(s) exist already"),
                                (tmp_path / "x.png", ("--seeds", "4"), None),
                                (tmp_path / "face.jpg", (), "outputs are PNG files"),
                                (tmp_path / "y.png", ("--save-trajectory",), None)):
        if message is None:
            run(tiny_model, sketch, inputs["face"], out, *extra)
            continue
        with pytest.raises(SystemExit) as excinfo:
            run(tiny_model, sketch, inputs["face"], out, *extra)
        assert message in error_line(capsys, excinfo)
    assert (tmp_path / "x_seed4.png").read_bytes() == files(tmp_path)["face_seed4.png"]
    assert (tmp_path / "y_trajectory" / "y.png").is_file()  # the trajectory grid beside FILE.png, not in it
    with pytest.raises(SystemExit) as excinfo:
        run(tiny_model, inputs["sketches"], inputs["face"], tmp_path / "all.png")
    assert "names one file but --sketch" in error_line(capsys, excinfo)
    run(tiny_model, sketch, inputs["face"], tmp_path / "face.png", "--seed", 4, "--overwrite")
    assert files(tmp_path)["face.png"] != before and not (tmp_path / "all.png").exists()


@pytest.mark.parametrize("spec, message", [("3-1", "runs backwards"), ("a", "expected seeds like 7, 0-3 or 0,2,5"),
                                           ("1,-2", "expected seeds"), ("0-2,2", "gives seed 2 twice"),
                                           ("0-5000", "more than 1000 samples"), ("1-", "expected seeds")])
def test_bad_seed_specs_are_one_line(tiny_model, inputs, tmp_path, capsys, spec, message):
    with pytest.raises(SystemExit) as excinfo:
        run(tiny_model, inputs["sketches"], inputs["face"], tmp_path / "out", f"--seeds={spec}")
    assert message in error_line(capsys, excinfo) and not (tmp_path / "out").exists()
    assert parse_seeds("0-2,7") == (0, 1, 2, 7) and parse_seeds("7") == (7,) and parse_seeds("0,2,5") == (0, 2, 5)


def test_grid_edm_samples_elsewhere_and_phi_is_the_checkpoints_grid(tiny_model, inputs, tmp_path, capsys):
    runs = {"plain": (), "phi": ("--grid", "phi"), "edm": ("--grid", "edm"), "edm3": ("--grid", "edm", "--rho", 3)}
    for out, extra in runs.items():
        run(tiny_model, inputs["sketches"], inputs["references"], tmp_path / out, "--sampler", "euler", *extra)
    got = {name: files(tmp_path / name) for name in runs}
    assert got["phi"] == got["plain"]
    assert all(got["edm"][k] != got["plain"][k] != got["edm3"][k] for k in got["plain"])
    assert "steps on the edm grid (rho 3)" in capsys.readouterr().out
    for bad, message in ((("--rho", 3), "pass --grid edm with it"), (("--grid", "edm", "--rho", 0), "--rho must be"),
                         (("--seed", 1, "--seeds", 2), "--seed and --seeds exclude each other")):
        with pytest.raises(SystemExit) as excinfo:
            run(tiny_model, inputs["sketches"], inputs["references"], tmp_path / "bad", *bad)
        assert message in error_line(capsys, excinfo)
