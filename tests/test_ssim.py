"""utils.ssim.ssim_box against scikit-image's structural_similarity (the definition the paper measured with)."""
import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from utils.ssim import ssim_box


def _images(seed: int, batch: int = 3, size: int = 40) -> tuple[torch.Tensor, torch.Tensor]:
    """Smooth structured images in [0, 1] and noisy, clipped copies of them (like the phi* search compares)."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(batch, 3, size // 8, size // 8, generator=g, dtype=torch.float64)
    clean = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bicubic", align_corners=False)
    clean = clean.clamp(0, 1)
    levels = torch.tensor([0.02, 0.2, 1.5], dtype=torch.float64)[:batch].view(-1, 1, 1, 1)
    noisy = (clean + levels * torch.randn(clean.shape, generator=g, dtype=torch.float64)).clamp(0, 1)
    return clean, noisy


def _skimage(x: torch.Tensor, y: torch.Tensor, **kwargs) -> np.ndarray:
    to_hwc = lambda t: t.permute(1, 2, 0).double().numpy()  # noqa: E731
    return np.array([structural_similarity(to_hwc(a), to_hwc(b), channel_axis=2, **kwargs) for a, b in zip(x, y)])


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
def test_matches_skimage_per_image(dtype):
    clean, noisy = _images(0)
    ours = ssim_box(clean.to(dtype), noisy.to(dtype), data_range=1.0, reduction="none")
    expected = _skimage(clean, noisy, data_range=1.0)
    assert ours.shape == (3,) and ours.dtype == dtype
    np.testing.assert_allclose(ours.double().numpy(), expected, rtol=0, atol=1e-4 if dtype == torch.float32 else 1e-10)
    # the three noise levels give clearly different SSIMs, so the comparison is not between near-constant numbers
    assert expected[0] > 0.9 and expected[2] < 0.3
    assert float(ssim_box(clean.to(dtype), noisy.to(dtype))) == pytest.approx(expected.mean(), abs=1e-4)


def test_matches_skimage_other_window_and_range():
    clean, noisy = _images(1)
    ours = ssim_box(2 * clean - 1, 2 * noisy - 1, data_range=2.0, window=11, reduction="none")
    expected = _skimage(2 * clean - 1, 2 * noisy - 1, data_range=2.0, win_size=11)
    np.testing.assert_allclose(ours.numpy(), expected, rtol=0, atol=1e-10)


def test_reference_broadcasts_over_the_batch():
    clean, noisy = _images(2)
    one_reference = ssim_box(clean[:1], noisy, reduction="none")
    expanded = ssim_box(clean[:1].expand_as(noisy), noisy, reduction="none")
    torch.testing.assert_close(one_reference, expanded)


def test_identical_images_score_one_and_gradient_flows():
    clean, noisy = _images(3, batch=2, size=12)
    assert torch.allclose(ssim_box(clean, clean, reduction="none"), torch.ones(2, dtype=torch.float64))
    y = noisy.clone().requires_grad_(True)
    (1 - ssim_box(clean, y)).backward()
    # the gradient agrees with a central finite difference along a random direction
    direction = torch.randn(y.shape, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
    eps = 1e-6
    numeric = (ssim_box(clean, noisy - eps * direction) - ssim_box(clean, noisy + eps * direction)) / (2 * eps)
    assert float((y.grad * direction).sum()) == pytest.approx(float(numeric), rel=1e-5)
    assert float(numeric) != 0


@pytest.mark.parametrize(
    "kwargs, message",
    [({"reduction": "sum"}, "reduction"), ({"window": 8}, "odd"), ({"window": 41}, "smaller than")],
)
def test_rejects_bad_arguments(kwargs, message):
    clean, noisy = _images(4)
    with pytest.raises(ValueError, match=message):
        ssim_box(clean, noisy, **kwargs)


def test_rejects_non_batched_input():
    clean, noisy = _images(4)
    with pytest.raises(ValueError, match=r"\[B, C, H, W\]"):
        ssim_box(clean[0], noisy[0])
