"""bench/recolour.py: the recolouring items have the answer they claim, and the bench runs end to end."""
from __future__ import annotations

import importlib.util
import json
import math
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from utils.images import quantize

pytest_plugins = ["conftest_ckpt"]
ROOT = Path(__file__).resolve().parents[1]


def _bench():
    spec = importlib.util.spec_from_file_location("recolour_bench", ROOT / "bench" / "recolour.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _lab(image: torch.Tensor) -> np.ndarray:
    return cv2.cvtColor(quantize(image).permute(1, 2, 0).numpy().astype(np.float32) / 255, cv2.COLOR_RGB2Lab)


def test_items_turn_reference_and_ground_truth_by_one_angle_and_keep_lightness(faces):
    bench = _bench()
    plain = bench.turned_items(faces, 4, 16, seed=0, mirror=False)
    mirrored = bench.turned_items(faces, 4, 16, seed=0, mirror=True)
    assert torch.equal(mirrored["reference"], plain["reference"].flip(-1))
    assert torch.equal(plain["sketch"], mirrored["sketch"]) and torch.equal(plain["target"], mirrored["target"])
    for i in range(4):
        turned, original = _lab(plain["target"][i]), _lab(plain["original"][i])
        assert np.abs(turned[..., 0] - original[..., 0]).mean() < 1.5
        keep = np.hypot(original[..., 1], original[..., 2]) > 15
        change = np.arctan2(turned[keep, 2], turned[keep, 1]) - np.arctan2(original[keep, 2], original[keep, 1])
        turn = abs(np.angle(np.mean(np.exp(1j * change))))
        assert math.pi / 2 - 0.3 <= turn <= math.pi  # at least a quarter turn, as documented
    # the right answer scores best: the turned ground truth against itself beats the original on every figure
    right, wrong = bench.scores(plain["target"], plain), bench.scores(plain["original"], plain)
    assert right["psnr"] > wrong["psnr"] + 5 and right["colour_distance"] < wrong["colour_distance"]


def test_bench_runs_on_a_checkpoint_and_refuses_bad_labels(tiny_model, tmp_path, capsys):
    bench = _bench()
    out = tmp_path / "r.json"
    bench.main(["--checkpoints", str(tiny_model.checkpoint), "--labels", "tiny", "--images", str(tiny_model.faces),
                "--count", "3", "--mirror", "--json", str(out), "--sheet", str(tmp_path / "s.png"), "--sheet-count",
                "2"])
    rows = json.loads(out.read_text())["rows"]
    assert set(rows) == {"turned reference itself", "original ground truth (ignores the reference)", "tiny"}
    assert (tmp_path / "s.png").is_file() and "turned and mirrored" in capsys.readouterr().out
    with pytest.raises(SystemExit) as err:
        bench.main(["--checkpoints", str(tiny_model.checkpoint), "--labels", "a", "b", "--images",
                    str(tiny_model.faces)])
    assert err.value.code != 0 and "--labels" in capsys.readouterr().err
