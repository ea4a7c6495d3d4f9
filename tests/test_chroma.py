"""Hue rotation of training pairs (utils.chroma, data.colour_rotation): what it keeps, what it turns, and that the
training stream is untouched while it is off."""
from __future__ import annotations

import math

import cv2
import numpy as np
import pytest
import torch

from utils.chroma import rotate_chroma


def _lab(image: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(image.astype(np.float32) / 255.0, cv2.COLOR_RGB2Lab)


def _hue_turn(before: np.ndarray, after: np.ndarray) -> float:
    """The circular median of the per-pixel hue change over pixels with chroma > 10 before and after."""
    lab_b, lab_a = _lab(before).reshape(-1, 3), _lab(after).reshape(-1, 3)
    keep = (np.hypot(lab_b[:, 1], lab_b[:, 2]) > 10) & (np.hypot(lab_a[:, 1], lab_a[:, 2]) > 10)
    change = np.arctan2(lab_a[keep, 2], lab_a[keep, 1]) - np.arctan2(lab_b[keep, 2], lab_b[keep, 1])
    return float(np.angle(np.median(np.cos(change)) + 1j * np.median(np.sin(change))))


def test_a_zero_or_full_turn_is_the_identity_and_grays_stay_gray():
    image = np.random.default_rng(0).integers(0, 256, (9, 7, 3), dtype=np.uint8)
    assert np.array_equal(rotate_chroma(image, 0.0), image)
    assert np.abs(rotate_chroma(image, 2 * math.pi).astype(int) - image).max() <= 1
    gray = np.repeat(np.arange(0, 256, 15, dtype=np.uint8)[:, None, None], 3, axis=2)
    assert np.abs(rotate_chroma(gray, 1.3).astype(int) - gray).max() <= 1


def test_hue_turns_by_the_angle_and_lightness_stays():
    skin = np.full((1, 1, 3), (230, 190, 170), dtype=np.uint8)  # in gamut after any turn (chroma ~19)
    before = _lab(skin)[0, 0]
    for angle in (0.5, math.pi / 2, 2.0, math.pi):
        after = _lab(rotate_chroma(skin, angle))[0, 0]
        assert abs(after[0] - before[0]) < 0.6
        turned = math.atan2(after[2], after[1]) - math.atan2(before[2], before[1])
        assert abs(math.remainder(turned - angle, 2 * math.pi)) < 0.06, angle
    red = np.full((1, 1, 3), (200, 40, 40), dtype=np.uint8)
    opposite = rotate_chroma(red, math.pi)[0, 0].astype(int)
    assert opposite[0] < opposite[1] and opposite[0] < opposite[2]  # red turns to a cyan


def test_bad_images_are_refused():
    with pytest.raises(ValueError, match="uint8"):
        rotate_chroma(np.zeros((4, 4), np.uint8), 1.0)


def test_training_pairs_turn_together_and_off_changes_nothing(faces):
    """colour_rotation 1: target and reference of an item have one hue turn (their lightness and the sketch stay);
    colour_rotation 0: the items are those of a pipeline without the option."""
    from data.dataset import Pipeline, TrainDataset
    from data.folder import scan_folder

    entries = scan_folder(faces)
    plain = TrainDataset(entries, Pipeline(size=32))
    off = TrainDataset(entries, Pipeline(size=32, colour_rotation=0.0))
    turned = TrainDataset(entries, Pipeline(size=32, colour_rotation=1.0))
    to_uint8 = lambda t: ((t + 1) * 127.5).round().permute(1, 2, 0).to(torch.uint8).numpy()  # noqa: E731
    for i in range(4):
        a, b, c = plain[i], off[i], turned[i]
        for key in ("target", "sketch", "reference"):
            assert torch.equal(a[key], b[key])
        assert torch.equal(a["sketch"], c["sketch"])
        assert not torch.equal(a["target"], c["target"])
        for key in ("target", "reference"):
            lab_a, lab_c = _lab(to_uint8(a[key])), _lab(to_uint8(c[key]))
            assert np.abs(lab_a[..., 0] - lab_c[..., 0]).mean() < 1.5
        # one turn for both: the hue change of the colourful pixels, measured on each
        turns = [_hue_turn(to_uint8(a[key]), to_uint8(c[key])) for key in ("target", "reference")]
        assert abs(math.remainder(turns[0] - turns[1], 2 * math.pi)) < 0.1, turns


def test_out_of_range_colour_rotation_is_one_line(tmp_path):
    from data.datamodule import ColorizationDataModule
    from utils.errors import UserError

    with pytest.raises(UserError, match="colour_rotation"):
        ColorizationDataModule(root=str(tmp_path), colour_rotation=1.5)
