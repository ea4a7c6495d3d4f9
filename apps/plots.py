"""Figures of the phi* search (matplotlib, Agg backend): SSIM-vs-step curves, noisy-image grids, the c sweep."""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402  (the backend must be chosen first)
import numpy as np  # noqa: E402
import torch  # noqa: E402

from utils.images import to_uint8  # noqa: E402


def plot_ssim_curve(ssim: torch.Tensor, sigmas: torch.Tensor, title: str, r2_mean: float, path: str | Path) -> None:
    """SSIM against the forward step index for one schedule: mean over images, +-1 std band and min-max band.

    ``ssim`` is [images, steps] and ``sigmas`` [steps], both in forward order (sigma increasing with the step).
    A dashed straight line between the mean curve's ends shows what perfectly uniform degradation would look like.
    """
    ssim, sigmas = ssim.double().numpy(), sigmas.double().numpy()
    steps = np.arange(ssim.shape[1])
    mean, std = ssim.mean(0), ssim.std(0, ddof=1) if ssim.shape[0] > 1 else np.zeros(ssim.shape[1])
    fig, ax = plt.subplots(figsize=(5.2, 3.8), dpi=120)
    ax.fill_between(steps, ssim.min(0), ssim.max(0), color="tab:blue", alpha=0.12, label="min-max")
    ax.fill_between(steps, mean - std, mean + std, color="tab:blue", alpha=0.3, label="mean +- 1 std")
    ax.plot(steps, mean, color="tab:blue", lw=2, label=f"mean over {ssim.shape[0]} images")
    ax.plot([0, steps[-1]], [mean[0], mean[-1]], "k--", lw=1, label="uniform degradation")
    ax.set(xlabel=f"forward step t (sigma {sigmas[0]:.3g} -> {sigmas[-1]:.3g})", ylabel="SSIM(x0, noisy x_t)",
           ylim=(-0.02, 1.02), xlim=(0, steps[-1]))
    ax.set_title(f"{title}\nmean R^2 of SSIM vs t = {r2_mean:.3f}", fontsize=9)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, loc="upper right")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_noisy_grid(noisy: torch.Tensor, steps: Sequence[int], sigmas: Sequence[float], ssims: Sequence[float],
                    title: str, path: str | Path) -> None:
    """One row of noisy images ([K, C, H, W] in [-1, 1]) labelled with their step, sigma and SSIM to the clean one."""
    fig, axes = plt.subplots(1, len(noisy), figsize=(1.35 * len(noisy), 2.0), dpi=100, squeeze=False)
    for ax, image, step, sigma, value in zip(axes[0], noisy, steps, sigmas, ssims):
        ax.imshow(to_uint8(image))
        ax.set_title(f"t={step}\nsigma={sigma:.3g}", fontsize=7)
        ax.set_xlabel(f"SSIM {value:.2f}", fontsize=7)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_c_sweep(cs: Sequence[float], means: Sequence[float], stds: Sequence[float], best_c: float,
                 paper_c: float, n_images: int, path: str | Path) -> None:
    """Mean R^2 (+-1 std over images) of the sigma/(sigma+c) family against c, best c and the paper's c marked."""
    order = sorted(range(len(cs)), key=lambda i: cs[i])
    cs, means, stds = [cs[i] for i in order], [means[i] for i in order], [stds[i] for i in order]
    best = cs.index(best_c)
    fig, ax = plt.subplots(figsize=(5.2, 3.6), dpi=120)
    ax.errorbar(cs, means, yerr=stds, marker="o", ms=4, capsize=2, label=f"mean +- 1 std ({n_images} images)")
    ax.axvline(paper_c, color="tab:red", ls="--", lw=1, label=f"paper: c = {paper_c:g}")
    ax.plot(cs[best], means[best], "*", color="tab:orange", ms=14, label=f"best: c = {cs[best]:g} "
            f"(R^2 = {means[best]:.4f})")
    ax.set_xscale("log")
    ax.set(xlabel="c in phi(sigma) = sigma / (sigma + c)", ylabel="mean R^2 of SSIM vs phi(sigma)")
    ax.set_title("Linearity of SSIM degradation along the phi grid", fontsize=9)
    ax.grid(alpha=0.3, which="both")
    ax.legend(fontsize=7, loc="lower center")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def plot_image_rows(rows: Sequence[torch.Tensor], labels: Sequence[str], title: str, path: str | Path,
                    cell: float = 1.3) -> None:
    """A sheet of labelled rows, each [K, C, H, W] in [-1, 1] (one column per image), shown without smoothing so
    that pixel noise stays visible."""
    k = len(rows[0])
    fig, axes = plt.subplots(len(rows), k, figsize=(cell * k + 1.6, cell * len(rows) + 0.4), dpi=120, squeeze=False)
    for r, (images, label) in enumerate(zip(rows, labels)):
        for c in range(k):
            ax = axes[r][c]
            ax.imshow(to_uint8(images[c]), interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r][0].set_ylabel(label, fontsize=7, rotation=0, ha="right", va="center")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
