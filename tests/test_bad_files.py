"""Every class of bad or unusual file that a user can hand in, through the evaluation scripts and colorize.py:
one line (what, which file, what to do) and exit status 2, or a result where the file is merely unusual."""
from __future__ import annotations

import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

import colorize
import evaluate_FID
import evaluate_SSIM_PSNR
from data.synthetic import render_face
from utils import metrics

pytest_plugins = ["conftest_ckpt"]
SIZE = 32


def face(seed: int, size: int = SIZE) -> Image.Image:
    return Image.fromarray(render_face(seed, size))


def write(path, kind: str, seed: int = 0) -> None:
    """A file of the given kind at ``path`` (the name keeps its extension whatever the content)."""
    img = face(seed)
    if kind == "rgb":
        img.save(path)
    elif kind == "gray":
        img.convert("L").save(path)
    elif kind == "rgba":
        rgba = img.convert("RGBA")
        rgba.putalpha(200)
        rgba.save(path)
    elif kind == "palette":
        img.convert("P", palette=Image.Palette.ADAPTIVE).save(path)
    elif kind == "16bit":
        arr = np.asarray(img.convert("L"), dtype=np.uint16) * 257
        Image.fromarray(arr).save(path)
    elif kind == "cmyk":
        buf = io.BytesIO()
        img.convert("CMYK").save(buf, "JPEG", quality=95)
        path.write_bytes(buf.getvalue())
    elif kind == "tiny":
        face(seed, 8).save(path)
    elif kind == "zero":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("not an image at all")
    elif kind == "truncated":
        buf = io.BytesIO()
        face(seed).save(buf, "PNG")
        path.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    elif kind == "bomb":  # a 1-bit PNG whose header claims more pixels than Pillow decodes safely
        Image.new("1", (15000, 15000)).save(path, optimize=False)
    elif kind == "directory":
        path.mkdir()
    else:
        raise ValueError(kind)


def folders(tmp_path, kind: str, name: str = "b"):
    real, fake = tmp_path / "real", tmp_path / "fake"
    real.mkdir()
    fake.mkdir()
    for i, stem in enumerate(["a", name]):
        write(real / f"{stem}.png", "rgb", i)
        write(fake / f"{stem}.png", "rgb", i + 10)
    target = fake / f"{name}.png"
    target.unlink()
    write(target, kind, 11)
    return real, fake


def last_error(capsys) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.strip()]
    assert "Traceback" not in err and lines and lines[-1].startswith("error: "), err
    return lines[-1]


@pytest.mark.parametrize("kind", ["rgb", "gray", "rgba", "palette", "16bit", "cmyk"])
def test_unusual_but_valid_images_are_scored(tmp_path, kind, capsys):
    real, fake = folders(tmp_path, kind)
    evaluate_SSIM_PSNR.main(["--real", str(real), "--fake", str(fake), "--json", str(tmp_path / "r.json")])
    assert "PSNR" in capsys.readouterr().out


@pytest.mark.parametrize("kind, says", [
    ("zero", "empty file"), ("text", "not a readable image"), ("truncated", "not a readable image"),
    ("bomb", "too large to decode"),
])
def test_unreadable_files_are_one_line_naming_them(tmp_path, kind, says, capsys):
    real, fake = folders(tmp_path, kind)
    for script, args in ((evaluate_SSIM_PSNR, []), (evaluate_FID, ["--test-random-inception", "--no-cache"])):
        with pytest.raises(SystemExit) as exit_info:
            script.main(["--real", str(real), "--fake", str(fake), *args])
        assert exit_info.value.code == 2
        line = last_error(capsys)
        assert says in line and "b.png" in line


def test_images_smaller_than_the_ssim_window_are_one_line(tmp_path, capsys):
    real, fake = tmp_path / "real", tmp_path / "fake"
    real.mkdir()
    fake.mkdir()
    for folder in (real, fake):
        write(folder / "a.png", "tiny")
    with pytest.raises(SystemExit):
        evaluate_SSIM_PSNR.main(["--real", str(real), "--fake", str(fake)])
    line = last_error(capsys)
    assert f"smaller than {metrics.SSIM_MIN_SIDE} px" in line and "a (8x8)" in line


def test_a_directory_named_like_an_image_is_not_an_image(tmp_path, capsys):
    real, fake = folders(tmp_path, "rgb")
    write(fake / "c.png", "directory")
    evaluate_SSIM_PSNR.main(["--real", str(real), "--fake", str(fake)])
    assert "2 pairs" in capsys.readouterr().out


def test_names_with_spaces_and_non_ascii_pair_up(tmp_path, capsys):
    real, fake = folders(tmp_path, "rgb", name="ça va ニコ")
    evaluate_SSIM_PSNR.main(["--real", str(real), "--fake", str(fake), "--json", str(tmp_path / "r.json")])
    assert "ça va ニコ" in json.loads((tmp_path / "r.json").read_text())["per_image"]


def test_empty_and_mismatched_folders_are_one_line(tmp_path, capsys):
    real, fake = folders(tmp_path, "rgb")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(SystemExit):
        evaluate_SSIM_PSNR.main(["--real", str(real), "--fake", str(empty)])
    assert "contains no images" in last_error(capsys)
    (fake / "b.png").rename(fake / "z.png")
    with pytest.raises(SystemExit):
        evaluate_SSIM_PSNR.main(["--real", str(real), "--fake", str(fake)])
    line = last_error(capsys)
    assert "b" in line and "z" in line and "paired by file name" in line


def test_flat_noise_figure_is_known_on_a_flat_image_with_known_noise():
    real = torch.full((1, 3, 64, 64), 120, dtype=torch.uint8)
    noise = 4.0 * torch.randn(real.shape, generator=torch.Generator().manual_seed(0))
    fake = (real.float() + noise).round().clamp(0, 255).to(torch.uint8)
    got, own = metrics.flat_noise(real, fake)
    # 3.57 * std, with the std of rounded noise sqrt(16 + 1/12)
    assert abs(float(got) - 3.568 * (16 + 1 / 12) ** 0.5) < 0.3 and float(own) == 0.0
    edges = real.clone()
    edges[..., ::2] = 250  # a pattern everywhere: no flat pixel
    assert torch.isnan(metrics.flat_noise(edges, edges)[0]).all()


@pytest.mark.parametrize("kind, says", [
    ("zero", "empty file"), ("text", "not a readable image"), ("truncated", "not a readable image"),
    ("bomb", "too large to decode"),
])
def test_colorize_names_bad_inputs_in_one_line(tiny_model, tmp_path, kind, says, capsys, one_thread):
    sketch = tmp_path / "bad.png"
    write(sketch, kind)
    good = tmp_path / "ref.png"
    write(good, "rgb")
    with pytest.raises(SystemExit) as exit_info:
        colorize.main(["--checkpoint", str(tiny_model.checkpoint), "--sketch", str(sketch), "--reference", str(good),
                       "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    line = last_error(capsys)
    assert says in line and "bad.png" in line
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("kind", ["gray", "rgba", "palette", "16bit", "cmyk", "tiny"])
def test_colorize_takes_unusual_images(tiny_model, tmp_path, kind, one_thread):
    sketch = tmp_path / f"in {kind} é.png"
    write(sketch, kind)
    colorize.main(["--checkpoint", str(tiny_model.checkpoint), "--sketch", str(sketch), "--reference", str(sketch),
                   "--out", str(tmp_path / "out")])
    out = Image.open(tmp_path / "out" / f"in {kind} é.png")
    assert out.size == Image.open(sketch).size and out.mode == "RGB"
