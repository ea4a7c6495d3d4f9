"""The colour-transfer figure (utils.metrics.colour_distance) on cases whose answer is known."""
import numpy as np
import pytest
import torch
from skimage.color import hsv2rgb, rgb2hsv

from utils import metrics


def face_like(seed=0, size=32):
    """A random image made of a few flat colour patches (a palette), uint8 (1, 3, size, size)."""
    g = torch.Generator().manual_seed(seed)
    palette = torch.randint(0, 256, (5, 3), generator=g, dtype=torch.uint8)
    labels = torch.randint(0, 5, (size // 8, size // 8), generator=g).repeat_interleave(8, 0).repeat_interleave(8, 1)
    return palette[labels].permute(2, 0, 1)[None].contiguous()


def hue_shift(images, turns):
    hsv = rgb2hsv(images[0].permute(1, 2, 0).numpy())
    hsv[..., 0] = (hsv[..., 0] + turns) % 1.0
    return torch.from_numpy((hsv2rgb(hsv) * 255).round().astype(np.uint8)).permute(2, 0, 1)[None]


def test_identical_and_rearranged_images_score_zero():
    img = face_like()
    assert metrics.colour_distance(img, img).item() == pytest.approx(0, abs=1e-9)
    perm = torch.randperm(32 * 32, generator=torch.Generator().manual_seed(1))
    shuffled = img.flatten(2)[..., perm].reshape(img.shape)  # same colours, no pixel in place
    assert metrics.colour_distance(img, shuffled).item() == pytest.approx(0, abs=1e-9)
    assert metrics.colour_distance(img, torch.flip(img, dims=[3])).item() == pytest.approx(0, abs=1e-9)


def test_a_uniform_lab_shift_costs_its_length():
    lab = metrics.to_lab(face_like())
    for shift in ([0.0, 10.0, 0.0], [5.0, -3.0, 4.0]):
        moved = lab + torch.tensor(shift, dtype=torch.float64)
        distance = metrics.sliced_wasserstein(lab, moved).item()
        assert distance == pytest.approx(float(torch.tensor(shift).norm()), rel=0.03)


def test_hue_shift_grows_and_an_unrelated_palette_is_far():
    img = face_like(seed=2)
    small, large = (metrics.colour_distance(img, hue_shift(img, t)).item() for t in (0.05, 0.4))
    unrelated = metrics.colour_distance(img, face_like(seed=3)).item()
    assert 1 < small < large and small < unrelated
    # different sizes compare (quantiles), and the batch is per image
    big = torch.nn.functional.interpolate(img.float(), scale_factor=2, mode="nearest").to(torch.uint8)
    assert metrics.colour_distance(img, big).item() == pytest.approx(0, abs=1e-6)
    batch = metrics.colour_distance(torch.cat([img, img]), torch.cat([img, face_like(seed=3)]))
    assert batch.shape == (2,) and batch[0] == pytest.approx(0, abs=1e-9) and batch[1] == pytest.approx(unrelated)
