"""docs/python-api.md works as written: its ```python blocks run, in order, against the tiny trained checkpoint (the
page's first block, which names CKPT, SKETCHES and REFERENCE, is replaced by the test's own), and what the page
claims holds: the API's image is the file colorize.py writes for that sketch and seed, a batch gives the files of
the same batch size."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

import colorize
from utils.images import list_images, load_rgb

pytest_plugins = ["conftest_ckpt"]
pytestmark = pytest.mark.usefixtures("one_thread")
PAGE = Path(__file__).resolve().parents[1] / "docs" / "python-api.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", PAGE.read_text(), flags=re.S)


def test_the_page_runs_against_a_checkpoint_and_its_images_are_colorize_py_files(tiny_model, tmp_path,
                                                                                 monkeypatch, capsys):
    faces = list_images(tiny_model.faces)
    (tmp_path / "sketches").mkdir()
    sketches = [Path(shutil.copy(faces[i], tmp_path / "sketches" / f"sketch{i}.png")) for i in range(2)]
    names = {"CKPT": str(tiny_model.checkpoint), "SKETCHES": [str(s) for s in sketches], "REFERENCE": str(faces[5])}
    settings, *blocks = python_blocks()
    assert all(re.search(rf"^{name} = ", settings, flags=re.M) for name in names)  # the block the test replaces
    monkeypatch.chdir(tmp_path)
    namespace = dict(names)
    for block in blocks:
        exec(compile(block, str(PAGE), "exec"), namespace)  # noqa: S102 - the page's own example code
    written = sorted(p.name for p in (tmp_path / "colorized").iterdir())
    assert written == [f"sketch{i}_seed{s}.png" for i in range(2) for s in range(3)]
    assert "error: --steps must be at least 1, got 0" in capsys.readouterr().out

    colorize.main(["--checkpoint", str(tiny_model.checkpoint), "--sketch", str(sketches[0]), "--reference",
                   str(faces[5]), "--out", str(tmp_path / "cli"), "--device", "cpu", "--seeds", "0-2"])
    for seed in range(3):
        assert np.array_equal(load_rgb(tmp_path / "cli" / f"sketch0_seed{seed}.png"),
                              load_rgb(tmp_path / "colorized" / f"sketch0_seed{seed}.png"))
    colorize.main(["--checkpoint", str(tiny_model.checkpoint), "--sketch", str(tmp_path / "sketches"), "--reference",
                   str(faces[5]), "--out", str(tmp_path / "batch"), "--device", "cpu", "--seed", "0",
                   "--batch-size", "2"])
    for sketch, image in zip(sketches, namespace["images"]):
        assert np.array_equal(load_rgb(tmp_path / "batch" / sketch.name), image)
