"""Bad input gets one clear line naming the file (skipped with a count, or exit 2), never a traceback;
unusual image modes are converted correctly."""
from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from data.datamodule import ColorizationDataModule
from data.folder import load_square, readable, scan_folder
from data.prepare import main as prepare_main
from data.synthetic import render_face
from utils.errors import UserError
from utils.images import save_image

ROOT = Path(__file__).resolve().parents[1]


def jpeg_bytes(seed: int, size: int = 48) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(render_face(seed, size)).save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture
def messy(tmp_path) -> Path:
    """6 good faces plus a corrupt, a truncated, a zero-byte and a text file named like images, and a stray .txt."""
    root = tmp_path / "messy"
    root.mkdir()
    for i in range(6):
        (root / f"good_{i}.jpg").write_bytes(jpeg_bytes(i))
    (root / "corrupt.jpg").write_bytes(np.random.default_rng(0).bytes(2000))
    full = jpeg_bytes(99)
    (root / "truncated.jpg").write_bytes(full[: len(full) * 2 // 3])  # header intact, scan data cut
    (root / "empty.png").write_bytes(b"")
    (root / "notes.png").write_text("this is not a picture")
    (root / "readme.txt").write_text("ignored: not an image extension")
    return root


def warnings_of(text: str) -> list[str]:
    return [line for line in text.splitlines() if line.startswith("warning:")]


def test_screening_names_each_bad_file_and_counts(messy, capsys):
    good = readable(scan_folder(messy), decode=True)
    assert sorted(e.name for e in good) == [f"good_{i}" for i in range(6)]
    lines = warnings_of(capsys.readouterr().err)
    for name in ("corrupt.jpg", "truncated.jpg", "empty.png", "notes.png"):
        assert sum(name in line for line in lines) == 1, name
    assert "skipped 4 unreadable file(s) of 10 images" in lines[-1]
    assert not any("readme.txt" in line for line in lines)


def test_training_skips_bad_files_cheaply_and_truncated_ones_when_loaded(messy, capsys):
    dm = ColorizationDataModule(str(messy), size=32, batch_size=4, num_workers=0, val_root=str(messy), seed=0)
    dm.setup("fit")
    names = [e.name for e in dm.train_set.entries]
    assert "truncated" in names and "corrupt" not in names and "empty" not in names  # header check only
    capsys.readouterr()
    index = names.index("truncated")
    item = dm.train_set[index]
    assert item["name"] != "truncated" and item["target"].shape == (3, 32, 32)
    dm.train_set[index]
    lines = warnings_of(capsys.readouterr().err)
    assert len(lines) == 1 and "truncated.jpg" in lines[0] and "skipped" in lines[0]  # reported once
    assert "truncated" not in [e.name for e in dm.val_set.entries]  # evaluation sets are fully decoded


def test_prepare_skips_bad_files_with_a_count(messy, tmp_path, capsys):
    prepare_main(["--src", str(messy), "--out", str(tmp_path / "out"), "--size", "16"])
    captured = capsys.readouterr()
    assert "skipped 4 unreadable" in captured.err and "wrote 6 items" in captured.out
    assert len(list((tmp_path / "out" / "gt").iterdir())) == 6


@pytest.mark.parametrize("case", ["missing", "empty", "all_bad", "clash"])
def test_unusable_folders_are_one_line_errors(tmp_path, capsys, case):
    src = tmp_path / "src"
    if case != "missing":
        src.mkdir()
    if case == "all_bad":
        (src / "a.jpg").write_bytes(b"")
        (src / "b.png").write_text("nope")
    if case == "clash":
        save_image(render_face(0, 16), src / "a.png")
        save_image(render_face(1, 16), src / "a.jpg")
    with pytest.raises(SystemExit) as err:
        prepare_main(["--src", str(src), "--out", str(tmp_path / "out")])
    assert err.value.code == 2
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and str(src) in errors[0]
    expected = {"missing": "does not exist", "empty": "no images", "all_bad": "could be read", "clash": "share a name"}
    assert expected[case] in errors[0]


def test_cli_error_has_no_traceback(tmp_path):
    result = subprocess.run(
        [sys.executable, "-m", "data.prepare", "--src", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")],
        cwd=ROOT, capture_output=True, text=True,
    )
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0 and result.stderr.startswith("error:")
    assert "Traceback" not in result.stderr


def test_sketch_names_that_do_not_match(tmp_path, capsys):
    images, sketches = tmp_path / "images", tmp_path / "sketches"
    for i in range(4):
        save_image(render_face(i, 32), images / f"f{i}.png")
    for i in (0, 1, 2, 7):
        save_image(np.full((32, 32), 255, np.uint8), sketches / f"f{i}.png")
    dm = ColorizationDataModule(str(images), size=32, num_workers=0, val_count=2, sketch_root=str(sketches))
    with pytest.raises(UserError, match="no file for 1 of 4 images") as err:
        dm.setup("fit")
    assert "f3" in str(err.value)
    save_image(np.full((32, 32), 255, np.uint8), sketches / "f3.png")
    dm = ColorizationDataModule(str(images), size=32, num_workers=0, val_count=2, sketch_root=str(sketches))
    dm.setup("fit")
    lines = warnings_of(capsys.readouterr().err)
    assert len(lines) == 1 and "f7" in lines[0] and "ignored" in lines[0]


def _save(img: Image.Image, path: Path, **kwargs) -> Path:
    img.save(path, **kwargs)
    return path


def test_image_modes_are_converted(tmp_path):
    rgb = render_face(3, 32)
    # RGBA: transparent pixels become white, opaque ones keep their colour
    rgba = np.dstack([rgb, np.full((32, 32), 255, np.uint8)])
    rgba[:, :8, 3] = 0
    out = load_square(_save(Image.fromarray(rgba), tmp_path / "rgba.png"), 32)
    assert (out[:, :8] == 255).all() and np.array_equal(out[:, 8:], rgb[:, 8:])
    # palette
    pal = Image.fromarray(rgb).quantize(16)
    out = load_square(_save(pal, tmp_path / "pal.png"), 32)
    assert np.array_equal(out, np.asarray(pal.convert("RGB")))
    # 16-bit grayscale: 65535 -> 255, 32768 -> 128
    g16 = np.full((32, 32), 65535, np.uint16)
    g16[:16] = 32768
    out = load_square(_save(Image.fromarray(g16), tmp_path / "g16.png"), 32)
    assert out.shape == (32, 32, 3) and (out[16:] == 255).all() and (np.abs(out[:16].astype(int) - 128) <= 1).all()
    # CMYK JPEG: pure cyan stays cyan-ish
    cmyk = Image.new("CMYK", (32, 32), (255, 0, 0, 0))
    out = load_square(_save(cmyk, tmp_path / "cmyk.jpg", quality=95), 32)
    assert out[..., 0].mean() < 40 and out[..., 1].mean() > 200 and out[..., 2].mean() > 200
    # grayscale: three equal channels
    out = load_square(_save(Image.fromarray(rgb).convert("L"), tmp_path / "gray.png"), 32)
    assert np.array_equal(out[..., 0], out[..., 1]) and np.array_equal(out[..., 1], out[..., 2])
    # all of them flow through the datamodule as (3, H, W) / (1, H, W) tensors
    dm = ColorizationDataModule(str(tmp_path), size=24, batch_size=5, num_workers=0, val_root=str(tmp_path))
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert batch["target"].shape == (5, 3, 24, 24) and batch["sketch"].shape == (5, 1, 24, 24)
    assert torch.isfinite(batch["reference"]).all()


@pytest.mark.parametrize("option,value", [("reference_other", 1.5), ("sketch_lowpass", -0.1), ("hint_patch", 0.0),
                                          ("hint_drop", 2.0)])
def test_out_of_range_data_options_are_one_line(tmp_path, option, value):
    from data.datamodule import ColorizationDataModule

    with pytest.raises(UserError, match=option):
        ColorizationDataModule(root=str(tmp_path), **{option: value})
