"""Several references per sketch on the user's side: colorize.py takes a set of reference files or a sub-folder per
sketch, the Python API takes a list, the trajectory grid shows every reference, and a model that takes one reference
says so in one line."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import colorize
from apps.colorize_jobs import plan_jobs
from apps.colorizer import Colorizer
from utils.errors import UserError
from utils.images import load_rgb

pytest_plugins = ["conftest_ckpt"]
pytestmark = pytest.mark.usefixtures("one_thread")


def run(model, sketch, references, out, *options) -> None:
    colorize.main(["--checkpoint", str(model.checkpoint), "--sketch", str(sketch), "--reference",
                   *map(str, references), "--out", str(out), "--device", "cpu", *map(str, options)])


@pytest.fixture(scope="module")
def faces(tiny_model) -> list[Path]:
    return sorted(tiny_model.faces.glob("*.png"))


def test_a_set_of_references_colorizes_and_differs_from_its_first_alone(tiny_warp_model, faces, tmp_path, capsys):
    run(tiny_warp_model, faces[0], faces[1:4], tmp_path / "set.png")
    run(tiny_warp_model, faces[0], faces[1:2], tmp_path / "one.png")
    assert "wrote 1 image" in capsys.readouterr().out
    both = load_rgb(tmp_path / "set.png"), load_rgb(tmp_path / "one.png")
    assert both[0].shape == both[1].shape == (16, 16, 3) and not np.array_equal(*both)
    # the Python API: one checkpoint load, the same pixels as the command line
    colorizer = Colorizer.from_checkpoint(tiny_warp_model.checkpoint, device="cpu", progress=False)
    np.testing.assert_array_equal(colorizer.colorize(faces[0], list(faces[1:4])), both[0])
    np.testing.assert_array_equal(colorizer.colorize(faces[0], faces[1]), both[1])


def test_a_transparent_background_is_no_part_of_a_reference(tiny_warp_model, faces, tmp_path):
    """A character-sheet panel saved with a transparent background: what lies under the transparency changes
    nothing, and the panel colours differently from the same pixels all opaque."""
    rgb = load_rgb(faces[1])
    alpha = np.full(rgb.shape[:2], 255, np.uint8)
    alpha[:, : rgb.shape[1] // 2] = 0
    for name, under in (("red", (255, 0, 0)), ("blue", (0, 0, 255))):
        painted = rgb.copy()
        painted[alpha == 0] = under
        Image.fromarray(np.dstack([painted, alpha])).save(tmp_path / f"{name}.png")
    colorizer = Colorizer.from_checkpoint(tiny_warp_model.checkpoint, device="cpu", progress=False)
    red, blue = (colorizer.colorize(faces[0], [tmp_path / f"{n}.png", faces[2]]) for n in ("red", "blue"))
    np.testing.assert_array_equal(red, blue)
    as_array = np.asarray(Image.open(tmp_path / "red.png"))  # an RGBA array gives what its file gives
    np.testing.assert_array_equal(colorizer.colorize(faces[0], [as_array, faces[2]]), red)
    assert not np.array_equal(red, colorizer.colorize(faces[0], [faces[1], faces[2]]))
    alone = colorizer.colorize(faces[0], tmp_path / "red.png")  # one panel alone: through the warp as well
    assert not np.array_equal(alone, colorizer.colorize(faces[0], faces[1]))
    Image.fromarray(np.dstack([rgb, np.zeros_like(alpha)])).save(tmp_path / "empty.png")
    with pytest.raises(UserError, match="transparent everywhere"):
        colorizer.colorize(faces[0], tmp_path / "empty.png")


def test_a_sub_folder_per_sketch_gives_its_set_and_a_file_its_single(tiny_warp_model, faces, tmp_path):
    sketches, references = tmp_path / "sketches", tmp_path / "references"
    (references / "a").mkdir(parents=True)
    sketches.mkdir()
    for name, face in (("a", faces[0]), ("b", faces[1])):
        Image.open(face).save(sketches / f"{name}.png")
    for k, face in enumerate(faces[2:5]):
        Image.open(face).save(references / "a" / f"view{k}.png")
    Image.open(faces[6]).save(references / "b.png")
    jobs = {job.name: job.references for job in plan_jobs(sketches, references, tmp_path / "out")}
    assert [p.name for p in jobs["a"]] == ["view0.png", "view1.png", "view2.png"]
    assert jobs["b"] == (references / "b.png",)
    run(tiny_warp_model, sketches, [references], tmp_path / "out", "--batch-size", 2, "--save-trajectory")
    assert sorted(p.name for p in (tmp_path / "out").glob("*.png")) == ["a.png", "b.png"]
    # the trajectory grid shows every reference: a third row for the set's other two, two rows for the single one
    tile = 16 + 2
    assert load_rgb(tmp_path / "out_trajectory" / "a.png").shape[0] == 3 * tile + 2
    assert load_rgb(tmp_path / "out_trajectory" / "b.png").shape[0] == 2 * tile + 2


def test_a_model_that_takes_one_reference_refuses_a_set_in_one_line(tiny_model, faces, tmp_path, capsys):
    with pytest.raises(SystemExit) as excinfo:
        run(tiny_model, faces[0], faces[1:3], tmp_path / "out.png")
    assert excinfo.value.code == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "takes one" in err[0] and "configs/variants/multiref.yaml" in err[0], err
    assert not (tmp_path / "out.png").exists()
    with pytest.raises(SystemExit):  # a folder among several references
        run(tiny_model, faces[0], [faces[1], tmp_path], tmp_path / "out.png")
    assert "one folder, or one or more image files" in capsys.readouterr().err


def test_the_page_takes_several_reference_uploads(tiny_warp_model, tiny_model, faces):
    from apps.webui import describe_checkpoint, run_request

    options = ("euler", "phi", 3, 1, 1, 0, 0, 0, 0, "reference")
    page = describe_checkpoint(tiny_warp_model.checkpoint)
    out, seen, trajectory, status = run_request(page, str(faces[0]), [str(f) for f in faces[1:3]], None, *options)
    assert status.startswith("done") and "2 references" in status and out.shape == (16, 16, 3), status
    *_, status = run_request(describe_checkpoint(tiny_model.checkpoint), str(faces[0]), [str(f) for f in faces[1:3]],
                             None, *options)
    assert status.startswith("error") and "takes one" in status and "multiref.yaml" in status
    *_, status = run_request(page, str(faces[0]), [], None, *options)
    assert status.startswith("error: no reference uploaded")
