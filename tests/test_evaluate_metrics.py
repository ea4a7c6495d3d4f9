"""utils.metrics against scikit-image on real anime faces, and FID/KID on synthetic features."""
from __future__ import annotations

import io
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from utils import metrics
from utils.images import list_images, load_rgb

TEST_IMAGES = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "anime_faces_128" / "test"
NUM_IMAGES = 12


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    buffer = io.BytesIO()
    Image.fromarray(image).save(buffer, "JPEG", quality=quality)
    return np.array(Image.open(buffer).convert("RGB"))


def _batch(images: list[np.ndarray]) -> torch.Tensor:
    return torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2)


@pytest.fixture(scope="module")
def real_and_degraded() -> tuple[list[np.ndarray], list[np.ndarray]]:
    if not TEST_IMAGES.is_dir():
        pytest.skip(f"real test images not found at {TEST_IMAGES} (the shared data folder next to the repository)")
    real = [load_rgb(path) for path in list_images(TEST_IMAGES)[:NUM_IMAGES]]
    return real, [_jpeg(image, quality=20 + 5 * i) for i, image in enumerate(real)]


def test_psnr_matches_scikit_image(real_and_degraded):
    real, fake = real_and_degraded
    ours = metrics.psnr(_batch(real), _batch(fake)).numpy()
    reference = [peak_signal_noise_ratio(r, f, data_range=255) for r, f in zip(real, fake)]
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-4)


def test_ssim_matches_scikit_image_with_gaussian_window(real_and_degraded):
    real, fake = real_and_degraded
    ours = metrics.ssim(_batch(real), _batch(fake)).numpy()
    reference = [
        structural_similarity(
            r, f, gaussian_weights=True, sigma=1.5, use_sample_covariance=False, data_range=255, channel_axis=2
        )
        for r, f in zip(real, fake)
    ]
    np.testing.assert_allclose(ours, reference, rtol=0, atol=1e-4)
    assert ours.std() > 0.005  # the JPEG qualities differ, so must the scores


def test_identical_images_give_infinite_psnr_and_unit_ssim(real_and_degraded):
    real = _batch(real_and_degraded[0])
    assert torch.isinf(metrics.psnr(real, real)).all()
    torch.testing.assert_close(metrics.ssim(real, real), torch.ones(len(real), dtype=torch.float64), rtol=0, atol=1e-5)


def test_ms_ssim_defined_from_176_px_and_reported_otherwise():
    reason = metrics.ms_ssim_unavailable(128, 128)
    assert reason is not None and "176" in reason and "128x128" in reason
    assert metrics.ms_ssim_unavailable(175, 400) is not None
    assert metrics.ms_ssim_unavailable(176, 176) is None
    images = torch.randint(0, 256, (2, 3, 176, 176), dtype=torch.uint8)
    noisy = (images.int() + torch.randint(-20, 21, images.shape)).clamp(0, 255).to(torch.uint8)
    scores = metrics.ms_ssim(images, noisy)
    assert scores.shape == (2,) and ((scores > 0) & (scores < 1)).all()
    torch.testing.assert_close(metrics.ms_ssim(images, images), torch.ones(2, dtype=torch.float64))


def test_summary_of_infinite_psnr_has_no_std():
    assert metrics.summarize([1.0, 3.0]) == {"mean": 2.0, "std": 1.0, "n": 2}
    summary = metrics.summarize([math.inf, 30.0])
    assert summary["mean"] == math.inf and summary["std"] is None


def test_fid_and_kid_of_feature_sets():
    generator = torch.Generator().manual_seed(0)
    real = torch.randn(40, 16, generator=generator)
    same = metrics.fid_kid(real, real)
    assert abs(same["fid"]) < 1e-6
    assert same["kid_subsets"] == 1 and same["kid_std"] is None and same["kid_subset_size"] == 40
    fake = torch.randn(60, 16, generator=generator) + 1.0
    shifted = metrics.fid_kid(real, fake, kid_subsets=10)
    assert shifted["fid"] == pytest.approx(16.0, rel=0.5)  # |mean shift|^2 = 16 dominates
    assert shifted["kid_subset_size"] == 40 and shifted["kid_subsets"] == 10 and shifted["kid_std"] > 0
    assert shifted["kid_mean"] > 10 * abs(same["kid_mean"])
    assert metrics.fid_kid(real, fake, kid_subsets=10, seed=3) == metrics.fid_kid(real, fake, kid_subsets=10, seed=3)
