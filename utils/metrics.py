"""Image-quality metrics on uint8 image batches, computed with torchmetrics (and LPIPS from ``utils.weights``).

Paired metrics (one value per image pair, images (B, 3, H, W) uint8, data range 255; PSNR in float64, the SSIMs in
float32 on [0, 1] images: float64 convolutions are ~15x slower on CPU and change SSIM by less than 5e-5):
- PSNR: 10 log10(255^2 / MSE), MSE over all pixels and channels of one image; identical images give inf.
- SSIM: Wang et al. 2004 with an 11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, population statistics,
  averaged over the channels and over the pixels whose window lies inside the image (a 5-px border is left out, as in
  the reference implementation and scikit-image's ``structural_similarity(gaussian_weights=True, sigma=1.5,
  use_sample_covariance=False, data_range=255, channel_axis=-1)``); torchmetrics gives the SSIM map.
- MS-SSIM: torchmetrics' default 5 scales (weights 0.0448 ... 0.1333), same window; defined only when the window still
  fits the coarsest scale, see :func:`ms_ssim_unavailable`.
Colour transfer (one value per output and the reference it was given, no pixel alignment needed):
- colour distance: sliced Wasserstein-1 distance between the two images' CIELAB colour distributions, in Delta E
  (CIE76) units, see :func:`colour_distance`; 0 for the same colours in any arrangement.
Distribution metrics (Inception-v3 features of two folders): FID and KID, torchmetrics' implementations; the
features of a folder can be cached on disk under a key made of its file names, file bytes and the extractor settings.
torchmetrics is imported where it is used: loading it takes seconds, and --help or a bad input should answer at once.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from .images import load_rgb

DATA_RANGE = 255.0
SSIM_SIGMA = 1.5
SSIM_BORDER = 5  # half of the 11-px Gaussian window torchmetrics uses for sigma 1.5: int(3.5 * 1.5 + 0.5)
SSIM_MIN_SIDE = 2 * SSIM_BORDER + 1  # smaller images leave no pixel whose window fits inside
MS_SSIM_SCALES = 5
MS_SSIM_WINDOW = 11
FID_UNBIASED_MIN = 2048  # fewer samples than feature dimensions: singular covariance, FID biased upward
KID_SUBSET_SIZE = 1000  # the usual subset size (Binkowski et al. 2018), reduced for small folders


def ms_ssim_unavailable(height: int, width: int) -> str | None:
    """Why MS-SSIM is undefined for images of this size, or None when it is defined.

    torchmetrics requires side // 2**(scales - 1) > window - 1, i.e. at least 176 px for 5 scales and an 11-px window
    (its message says "larger than 160")."""
    step = 2 ** (MS_SSIM_SCALES - 1)
    if min(height, width) // step > MS_SSIM_WINDOW - 1:
        return None
    need = MS_SSIM_WINDOW * step
    return (
        f"MS-SSIM needs images of at least {need} px per side ({MS_SSIM_SCALES} scales, {MS_SSIM_WINDOW}-px window); "
        f"these are {width}x{height}"
    )


def psnr(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """PSNR in dB per image pair, shape (B,)."""
    from torchmetrics.functional.image import peak_signal_noise_ratio

    return peak_signal_noise_ratio(fake.double(), real.double(), data_range=DATA_RANGE, reduction="none", dim=(1, 2, 3))


def _unit(images: torch.Tensor) -> torch.Tensor:
    return images.float() / DATA_RANGE


def ssim(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """SSIM per image pair, shape (B,), averaged without the border where the window leaves the image."""
    from torchmetrics.functional.image import structural_similarity_index_measure

    _, ssim_map = structural_similarity_index_measure(
        _unit(fake), _unit(real), sigma=SSIM_SIGMA, data_range=1.0, return_full_image=True
    )
    inner = ssim_map[..., SSIM_BORDER:-SSIM_BORDER, SSIM_BORDER:-SSIM_BORDER]
    return inner.flatten(1).double().mean(1)


def ms_ssim(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """MS-SSIM per image pair, shape (B,); only for sizes where :func:`ms_ssim_unavailable` is None."""
    from torchmetrics.functional.image import multiscale_structural_similarity_index_measure

    return multiscale_structural_similarity_index_measure(
        _unit(fake), _unit(real), sigma=SSIM_SIGMA, kernel_size=MS_SSIM_WINDOW, data_range=1.0, reduction="none"
    ).double()


#: Flat-region noise figure (:func:`flat_noise`): a target pixel is flat when the mean absolute Laplacian of the
#: target stays at or below FLAT_LEVEL (8-bit units) over the FLAT_WINDOW x FLAT_WINDOW window around it.
FLAT_LEVEL = 4.0
FLAT_WINDOW = 5
_LAPLACIAN = torch.tensor([[0.0, 1.0, 0.0], [1.0, -4.0, 1.0], [0.0, 1.0, 0.0]])


def _abs_laplacian(images: torch.Tensor) -> torch.Tensor:
    """Mean over the channels of |4-neighbour Laplacian|, (B, 3, H, W) uint8 -> (B, H-2, W-2) in 8-bit units."""
    x = images.float()
    b, c, h, w = x.shape
    lap = torch.nn.functional.conv2d(x.reshape(b * c, 1, h, w), _LAPLACIAN.view(1, 1, 3, 3))
    return lap.abs().reshape(b, c, h - 2, w - 2).mean(1)


def flat_noise(real: torch.Tensor, fake: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The speckle figure: mean |Laplacian| (8-bit units, averaged over RGB) of ``fake`` and of ``real`` inside the
    flat regions of ``real``; two tensors of shape (B,), NaN for an image without flat pixels.

    A flat region is where the target itself has no structure (see FLAT_LEVEL), so any Laplacian energy of the
    output there is noise or invented texture. On a flat target, i.i.d. Gaussian noise of standard deviation s gives
    sqrt(2 / pi) * sqrt(20) * s = 3.57 s (the Laplacian of the noise has variance (4 + 16) s^2).
    """
    lap_real, lap_fake = _abs_laplacian(real), _abs_laplacian(fake)
    pad = FLAT_WINDOW // 2
    local = torch.nn.functional.max_pool2d(lap_real[:, None], FLAT_WINDOW, stride=1, padding=pad)[:, 0]
    flat = (local <= FLAT_LEVEL).double()
    count = flat.flatten(1).sum(1)
    nan = torch.full_like(count, math.nan)

    def masked_mean(lap: torch.Tensor) -> torch.Tensor:
        total = (lap.double() * flat).flatten(1).sum(1)
        return torch.where(count > 0, total / count.clamp(min=1), nan)

    return masked_mean(lap_fake), masked_mean(lap_real)


#: Sliced Wasserstein: projections on COLOUR_DIRECTIONS fixed unit directions of Lab space, each distribution
#: summarised by COLOUR_QUANTILES quantiles (so that images of different sizes compare).
COLOUR_DIRECTIONS = 64
COLOUR_QUANTILES = 128


def _sphere_directions(n: int) -> torch.Tensor:
    """n unit vectors spread evenly over the sphere (Fibonacci lattice), (n, 3) float64: fixed, not random."""
    i = torch.arange(n, dtype=torch.float64) + 0.5
    z = 1 - 2 * i / n
    r = (1 - z**2).sqrt()
    theta = math.pi * (1 + 5**0.5) * i
    return torch.stack([r * theta.cos(), r * theta.sin(), z], dim=1)


def to_lab(images: torch.Tensor) -> torch.Tensor:
    """(B, 3, H, W) uint8 sRGB -> (B, H * W, 3) float64 CIELAB (D65), with scikit-image's conversion."""
    from skimage.color import rgb2lab  # noqa: PLC0415 - scikit-image is slow to import

    rgb = images.permute(0, 2, 3, 1).cpu().numpy().astype(np.float64) / 255.0
    return torch.from_numpy(rgb2lab(rgb, channel_axis=-1)).reshape(images.shape[0], -1, 3)


def sliced_wasserstein(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Sliced W1 between point sets a (B, N, 3) and b (B, M, 3), scaled by 2 so that moving every point by a vector
    v costs |v| (the mean of |cos| over the sphere is 1/2); (B,) float64."""
    dirs = _sphere_directions(COLOUR_DIRECTIONS).to(a.device)
    q = (torch.arange(COLOUR_QUANTILES, dtype=torch.float64, device=a.device) + 0.5) / COLOUR_QUANTILES
    qa = torch.quantile(a.double() @ dirs.T, q, dim=1)  # (Q, B, K)
    qb = torch.quantile(b.double() @ dirs.T, q, dim=1)
    return 2 * (qa - qb).abs().mean(dim=(0, 2))


def colour_distance(reference: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """How far the colours of ``fake`` are from those of the ``reference`` it was given, (B,) in Delta E units: the
    sliced Wasserstein-1 distance between their CIELAB pixel distributions. Alignment-free: a rearrangement of the
    reference's pixels scores 0; shifting every colour by Delta E d scores d. For cross-reference colorization it
    rewards following the reference's palette, which PSNR against the sketch's own colours cannot."""
    return sliced_wasserstein(to_lab(reference), to_lab(fake))


def pooled_colour_distance(references: torch.Tensor, fake: torch.Tensor,
                           shown: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`colour_distance` of ``fake`` (B, 3, H, W) to the pixels of its K ``references`` (B, K, 3, H, W)
    pooled into one distribution (the colours of a set of references, each holding part of them); with ``shown``
    (B, K, H, W) bool, only the pixels that are part of a reference (not a transparent background)."""
    if shown is None:
        return colour_distance(references.permute(0, 2, 3, 1, 4).flatten(3), fake)
    b = references.shape[0]
    pooled = to_lab(references.flatten(0, 1)).reshape(b, -1, 3)  # (B, K H W, 3), reference-major like shown
    keep, own = shown.flatten(1).cpu(), to_lab(fake)
    return torch.cat([sliced_wasserstein(pooled[i, keep[i]][None], own[i:i + 1]) for i in range(b)])


def lpips_distance(real: torch.Tensor, fake: torch.Tensor, lpips_net: nn.Module) -> torch.Tensor:
    """LPIPS per image pair, shape (B,), with a network from ``utils.weights.build_lpips`` (input in [-1, 1])."""
    with torch.no_grad():
        return lpips_net(fake.float() / 127.5 - 1.0, real.float() / 127.5 - 1.0).double()


def summarize(values: list[float]) -> dict[str, float | int | None]:
    """Mean and population standard deviation (ddof 0) over images; std is None when the mean is infinite, both are
    None for no values."""
    arr = np.asarray(values, dtype=np.float64)
    if arr.size == 0:
        return {"mean": None, "std": None, "n": 0}
    mean = float(arr.mean())
    return {"mean": mean, "std": float(arr.std()) if math.isfinite(mean) else None, "n": int(arr.size)}


class _Precomputed(nn.Module):
    """Lets torchmetrics' FID/KID take Inception features computed (and cached) beforehand."""

    def __init__(self, num_features: int) -> None:
        super().__init__()
        self.num_features = num_features

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return features


def kid_subset_size(num_real: int, num_fake: int) -> int:
    return min(KID_SUBSET_SIZE, num_real, num_fake)


def fid_kid(
    real: torch.Tensor, fake: torch.Tensor, kid_subsets: int = 100, seed: int = 0
) -> dict[str, float | int | None]:
    """FID and KID (mean and std over ``kid_subsets`` random subsets, seeded) between feature sets (N, D).

    When both sets are no larger than the subset size every subset would hold all features: KID is then computed
    once on all of them, and its std is None rather than a meaningless 0."""
    from torchmetrics.image.fid import FrechetInceptionDistance
    from torchmetrics.image.kid import KernelInceptionDistance

    dims = real.shape[1]
    fid = FrechetInceptionDistance(feature=_Precomputed(dims))
    fid.update(real.double(), real=True)
    fid.update(fake.double(), real=False)
    subset_size = kid_subset_size(len(real), len(fake))
    if subset_size == len(real) == len(fake):
        kid_subsets = 1
    with warnings.catch_warnings():  # KID warns that it keeps all features in memory: that is the point here
        warnings.filterwarnings("ignore", message=".*will save all extracted features.*")
        kid = KernelInceptionDistance(feature=_Precomputed(dims), subsets=kid_subsets, subset_size=subset_size)
    kid.update(real.double(), real=True)
    kid.update(fake.double(), real=False)
    with torch.random.fork_rng(devices=[]):  # KID draws its subsets from the global generator
        torch.manual_seed(seed)
        kid_mean, kid_std = kid.compute()
    return {
        "fid": float(fid.compute()),
        "kid_mean": float(kid_mean),
        "kid_std": float(kid_std) if kid_subsets > 1 else None,
        "kid_subsets": kid_subsets,
        "kid_subset_size": subset_size,
    }


def inception_features(
    files: list[Path], extractor: nn.Module, batch_size: int, device: torch.device, desc: str
) -> torch.Tensor:
    """Features (N, D) float32 of the images ``files`` (any sizes; a batch holds consecutive images of one size)."""
    extractor = extractor.to(device)
    features: list[torch.Tensor] = []
    batch: list[np.ndarray] = []

    def flush() -> None:
        images = torch.from_numpy(np.stack(batch)).permute(0, 3, 1, 2).to(device)
        with torch.inference_mode():
            features.append(extractor(images).float().cpu())
        batch.clear()

    for path in tqdm(files, desc=desc, unit="img", leave=False):
        image = load_rgb(path)
        if batch and (image.shape != batch[0].shape or len(batch) == batch_size):
            flush()
        batch.append(image)
    flush()
    return torch.cat(features)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_key(files: list[Path], root: Path, settings: dict) -> str:
    """SHA-256 of the extractor settings and of every file's path relative to ``root`` and bytes."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode())
    for path in files:
        name = path.relative_to(root).as_posix().encode()
        data = path.read_bytes()
        digest.update(len(name).to_bytes(8, "little") + name + len(data).to_bytes(8, "little") + data)
    return digest.hexdigest()


def cached_inception_features(
    files: list[Path],
    root: Path,
    extractor: nn.Module,
    settings: dict,
    cache_dir: Path,
    batch_size: int,
    device: torch.device,
    desc: str,
) -> tuple[torch.Tensor, Path, bool]:
    """(features, cache file, whether it was reused): features of ``files`` read from ``cache_dir`` when a folder with
    the same content was seen with the same ``settings``, else computed and stored there."""
    cache_file = cache_dir / f"inception_{folder_key(files, root, settings)[:32]}.pt"
    if cache_file.is_file():
        try:
            return torch.load(cache_file, weights_only=True)["features"], cache_file, True
        except Exception:  # an unreadable cache entry (e.g. a disk that filled up) is recomputed and replaced
            pass
    features = inception_features(files, extractor, batch_size, device, desc)
    cache_dir.mkdir(parents=True, exist_ok=True)
    partial = cache_file.with_suffix(f".{os.getpid()}.tmp")  # rename is atomic: readers never see half a file
    torch.save({"features": features, "folder": str(root), "settings": settings}, partial)
    os.replace(partial, cache_file)
    return features, cache_file, False
