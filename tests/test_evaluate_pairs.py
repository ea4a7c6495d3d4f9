"""utils.pairs: pairing by name without extension, and the errors that list missing, extra and mismatched files."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from utils.errors import UserError
from utils.pairs import count_size_mismatches, iter_pair_batches, match_pairs


def _write(folder: Path, name: str, size: int = 16, value: int = 0) -> None:
    path = folder / name
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((size, size, 3), value, dtype=np.uint8)).save(path)


def test_pairs_match_by_relative_name_whatever_the_extension(tmp_path):
    for name in ("a.png", "b.png", "sub/c.png"):
        _write(tmp_path / "real", name)
    for name in ("a.jpg", "b.webp", "sub/c.png"):
        _write(tmp_path / "fake", name)
    pairs = match_pairs(tmp_path / "real", tmp_path / "fake")
    assert [p.name for p in pairs] == ["a", "b", "sub/c"]
    assert pairs[0].fake.name == "a.jpg" and pairs[1].real.name == "b.png"


def test_missing_and_extra_names_are_listed_on_one_line(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        _write(tmp_path / "real", name)
    for name in ("a.png", "d.png"):
        _write(tmp_path / "fake", name)
    with pytest.raises(UserError) as err:
        match_pairs(tmp_path / "real", tmp_path / "fake")
    message = str(err.value)
    assert "\n" not in message
    assert "2 real image(s) have no generated counterpart" in message and "b, c" in message
    assert "1 generated image(s) have no real counterpart" in message and ": d" in message


def test_long_lists_are_shortened(tmp_path):
    _write(tmp_path / "fake", "x.png")
    for i in range(25):
        _write(tmp_path / "real", f"{i:02d}.png")
    with pytest.raises(UserError, match=r"00, 01, 02, 03, 04 and 20 more"):
        match_pairs(tmp_path / "real", tmp_path / "fake")


def test_two_files_of_one_name_are_ambiguous(tmp_path):
    _write(tmp_path / "real", "a.png")
    _write(tmp_path / "fake", "a.png")
    _write(tmp_path / "fake", "a.jpg")
    with pytest.raises(UserError, match="same name but different extensions"):
        match_pairs(tmp_path / "real", tmp_path / "fake")


def test_size_mismatch_is_an_error_unless_resizing(tmp_path):
    _write(tmp_path / "real", "a.png", size=16)
    _write(tmp_path / "real", "b.png", size=16)
    _write(tmp_path / "fake", "a.png", size=16)
    _write(tmp_path / "fake", "b.png", size=32, value=200)
    pairs = match_pairs(tmp_path / "real", tmp_path / "fake")
    with pytest.raises(UserError, match=r"1 pair\(s\) differ in size: b \(real 16x16, fake 32x32\).*--resize"):
        count_size_mismatches(pairs, resize=False)
    assert count_size_mismatches(pairs, resize=True) == 1
    [(names, real, fake)] = list(iter_pair_batches(pairs, batch_size=8))
    assert names == ["a", "b"] and real.shape == fake.shape == (2, 3, 16, 16)
    assert int(fake[1].min()) == int(fake[1].max()) == 200


def test_batches_split_at_size_changes_and_batch_size(tmp_path):
    for i, size in enumerate((16, 16, 16, 24, 24)):
        _write(tmp_path / "real", f"{i}.png", size=size)
        _write(tmp_path / "fake", f"{i}.png", size=size)
    batches = list(iter_pair_batches(match_pairs(tmp_path / "real", tmp_path / "fake"), batch_size=2))
    assert [(names, tuple(real.shape)) for names, real, _ in batches] == [
        (["0", "1"], (2, 3, 16, 16)),
        (["2"], (1, 3, 16, 16)),
        (["3", "4"], (2, 3, 24, 24)),
    ]
