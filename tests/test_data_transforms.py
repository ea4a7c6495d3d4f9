"""XDoG sketches, TPS warps and the procedural demo faces: determinism, shapes, ranges, and that they look right."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from data.synthetic import main as synthetic_main
from data.synthetic import render_face
from data.tps import TPSParams, control_grid, eval_tps, fit_tps, random_tps_warp
from utils.xdog import XDoGParams, xdog, xdog_torch
from utils.images import list_images, load_rgb, to_tensor

# -- XDoG ---------------------------------------------------------------------------------------------------------


def test_xdog_shape_dtype_and_binary_output():
    face = render_face(3, 64)
    sketch = xdog(face)
    assert sketch.shape == (64, 64) and sketch.dtype == np.uint8
    assert set(np.unique(sketch)) <= {0, 255}  # ramp = 1e9 is a hard step


@pytest.mark.parametrize("shape", [(1, 1, 3), (3, 5, 3), (17, 300, 3), (40, 33)])
def test_xdog_any_size_and_grayscale_input(shape):
    img = np.random.default_rng(0).integers(0, 256, size=shape, dtype=np.uint8)
    assert xdog(img, sigma=0.5).shape == shape[:2]


def test_xdog_flat_image_is_blank_and_an_edge_gives_a_dark_line():
    flat = np.full((32, 32, 3), 200, np.uint8)
    assert (xdog(flat) == 255).all()
    edge = flat.copy()
    edge[:, 16:] = 40
    sketch = xdog(edge)
    assert (sketch[:, 16] == 0).all()  # the dark side of the edge
    assert (sketch[:, :12] == 255).all() and (sketch[:, 22:] == 255).all()


def test_xdog_real_faces_have_clean_lines(shared_faces):
    for face in (load_rgb(p) for p in list_images(shared_faces / "test")[:8]):
        sketch = xdog(face, sigma=0.4)
        dark = (sketch < 128).mean()
        assert 0.03 < dark < 0.35, dark  # lines, neither a blank page nor noise
        # facial lines: the central band (eyes, nose, mouth) has ink, the face is not a uniform field
        assert (sketch[40:100, 32:96] < 128).mean() > 0.02


def test_xdog_params_sample_sigma_deterministically():
    params = XDoGParams()
    face = render_face(1, 64)
    a = [params.apply(face, np.random.default_rng(7)) for _ in range(2)]
    assert np.array_equal(a[0], a[1])
    sigmas = {params.sample_sigma(np.random.default_rng(s)) for s in range(40)}
    assert sigmas == {0.3, 0.4, 0.5}
    with pytest.raises(ValueError):
        XDoGParams(sigmas=())


def test_xdog_torch_matches_numpy_with_a_steep_ramp():
    faces = [render_face(s, 64) for s in range(3)]
    batch = torch.stack([to_tensor(f) for f in faces])
    soft = xdog_torch(batch, sigma=0.5, ramp=1e9)
    assert soft.shape == (3, 1, 64, 64)
    for f, s in zip(faces, soft):
        hard = xdog(f, sigma=0.5).astype(np.float32) / 127.5 - 1
        assert (np.abs(s[0].numpy() - hard) < 1e-3).mean() > 0.995


def test_xdog_torch_is_differentiable_and_in_range():
    x = torch.stack([to_tensor(render_face(s, 32)) for s in range(2)]).requires_grad_(True)
    y = xdog_torch(x)
    assert y.min() >= -1 and y.max() <= 1
    y.mean().backward()
    assert torch.isfinite(x.grad).all() and x.grad.abs().sum() > 0
    gray = xdog_torch(x[:, :1].detach())
    assert gray.shape == (2, 1, 32, 32)
    with pytest.raises(ValueError):
        xdog_torch(torch.zeros(3, 32, 32))


# -- TPS ----------------------------------------------------------------------------------------------------------


def test_tps_interpolates_its_control_points():
    src = control_grid(4)
    dst = src + np.random.default_rng(0).uniform(-0.1, 0.1, src.shape)
    w, a = fit_tps(src, dst)
    assert np.allclose(eval_tps(src, src, w, a), dst, atol=1e-9)


def test_tps_without_displacement_is_the_identity():
    face = render_face(5, 64)
    same = random_tps_warp(face, np.random.default_rng(0), TPSParams(shift=0.0, rotation=0.0))
    assert np.abs(same.astype(int) - face).max() <= 1


@pytest.mark.parametrize("shape", [(64, 64, 3), (48, 80, 3), (33, 21)])
def test_tps_deterministic_shape_preserving_and_seed_dependent(shape):
    img = np.random.default_rng(1).integers(0, 256, size=shape, dtype=np.uint8)
    a = random_tps_warp(img, np.random.default_rng(3))
    b = random_tps_warp(img, np.random.default_rng(3))
    c = random_tps_warp(img, np.random.default_rng(4))
    assert a.shape == img.shape and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_tps_warp_moves_pixels_but_keeps_the_picture():
    face = render_face(2, 64)
    warped = random_tps_warp(face, np.random.default_rng(0))
    diff = np.abs(warped.astype(int) - face).mean()
    assert 2 < diff < 60
    assert np.abs(warped.mean((0, 1)) - face.mean((0, 1))).max() < 20  # same colours overall


def test_tps_params_validate():
    with pytest.raises(ValueError):
        TPSParams(grid=1)
    with pytest.raises(ValueError):
        TPSParams(shift=-0.1)


# -- demo faces ---------------------------------------------------------------------------------------------------


def test_render_face_deterministic_and_varied():
    a, b, c = render_face(11, 64), render_face(11, 64), render_face(12, 64)
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)
    assert render_face(11, 96).shape == (96, 96, 3)


def test_render_face_is_cel_shaded_with_outlines():
    face = render_face(4, 128)
    # dark outlines
    assert (face.max(axis=2) < 70).mean() > 0.03
    # a handful of dominant flat colours cover most of the image
    colors, counts = np.unique(face.reshape(-1, 3), axis=0, return_counts=True)
    top = np.sort(counts)[::-1]
    assert top[:12].sum() > 0.6 * face.shape[0] * face.shape[1]
    # its sketch has lines, not a blank page
    assert 0.03 < (xdog(face, 0.5) < 128).mean() < 0.35


def test_synthetic_cli_writes_reproducible_pngs(tmp_path, capsys):
    synthetic_main(["--out", str(tmp_path / "a"), "--count", "3", "--size", "32", "--seed", "5"])
    synthetic_main(["--out", str(tmp_path / "b"), "--count", "3", "--size", "32", "--seed", "5"])
    names = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert names == ["face_00000.png", "face_00001.png", "face_00002.png"]
    for n in names:
        assert (tmp_path / "a" / n).read_bytes() == (tmp_path / "b" / n).read_bytes()
    with pytest.raises(SystemExit) as err:
        synthetic_main(["--out", str(tmp_path / "a"), "--count", "2"])
    assert err.value.code == 2
    assert "not empty" in capsys.readouterr().err
    synthetic_main(["--out", str(tmp_path / "a"), "--count", "2", "--size", "32", "--overwrite"])
    assert len(list((tmp_path / "a").iterdir())) == 2


def test_contrast_stretch_keeps_the_lines_of_pale_art():
    face = render_face(3, 64)
    pale = (255 - (255 - face.astype(np.float32)) * 0.3).round().astype(np.uint8)  # 30 % of the contrast
    paper, ours = XDoGParams(contrast="none"), XDoGParams()
    ink = {name: (p.extract(img, 0.4) < 128).mean() for name, p, img in
           [("full", paper, face), ("pale_paper", paper, pale), ("pale_ours", ours, pale)]}
    assert ink["pale_paper"] < 0.2 * ink["full"]  # the paper's fixed threshold loses most lines
    assert abs(ink["pale_ours"] / ink["full"] - 1) < 0.35  # the stretch brings them back
    with pytest.raises(ValueError, match="contrast"):
        XDoGParams(contrast="auto")
