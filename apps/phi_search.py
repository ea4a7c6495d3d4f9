"""The phi* search that motivates SSIMBaD (its choice of phi* by the linearity of SSIM's decay).

For each candidate phi and each clean image x0: take the N-point grid evenly spaced in phi-space
(:func:`models.phi.phi_grid`), measure y_i = SSIM(x0, clip(x0 + sigma_i n, -1, 1)) on [0, 1] images, and score the
R^2 of the least-squares line of y against phi(sigma_i). Candidates are ranked by the mean R^2 over images.

Choices made here:
- one noise tensor n per image (drawn from the seed) is shared by every sigma and every candidate, so candidates
  differ only in where they sample the same SSIM-vs-sigma curve;
- an R^2 that is undefined (y or phi(sigma) constant along the grid) is NaN and left out of that candidate's mean
  (``n_valid`` counts the images that entered it); a candidate whose grid cannot be formed in float64 for the
  requested sigma range is listed last with the reason and no score.
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Sequence

import torch
from tqdm import tqdm

from models.phi import Phi, phi_grid, rational
from models.schedules import EDMSchedule, PhiSchedule, VPSchedule

from utils.errors import UserError
from utils.images import ImageReadError, list_images, load_rgb, resize_center_crop, to_tensor
from utils.ssim import ssim_box

#: The paper's transform phi*(sigma) = sigma / (sigma + 0.3), whose grid is plotted next to DDPM's and EDM's.
PHI_STAR_C = 0.3
PHI_STAR = rational(PHI_STAR_C).name

#: Plot titles of the three schedules compared in the figures, by file-name key.
SCHEDULE_TITLES = {
    "ddpm": "DDPM (linear beta 1e-6..1e-2, T=1000)",
    "edm": "EDM (rho = 7)",
    "phi": f"SSIMBaD phi*(sigma) = {PHI_STAR}",
}


@dataclass(frozen=True)
class Score:
    """Mean and sample standard deviation of R^2 over the images where it is defined."""

    name: str
    mean: float
    std: float
    n_valid: int
    n_images: int
    note: str = ""


# ---- images and noise ---------------------------------------------------------------------------------------------

def sample_images(folder: str | Path, num_images: int, size: int, generator: torch.Generator):
    """A seeded random sample of ``num_images`` readable images of ``folder`` as [I, 3, size, size] in [-1, 1].

    Returns (paths, images, notes): the paths are sorted by name; ``notes`` lists what the caller should be told
    (fewer images than asked, unreadable files skipped). Raises :class:`UserError` when nothing can be read.
    """
    files = list_images(folder)
    notes = []
    if num_images > len(files):
        notes.append(f"{folder} has only {len(files)} images; using all of them instead of {num_images}")
    chosen, skipped = [], []
    for index in torch.randperm(len(files), generator=generator).tolist():
        if len(chosen) == num_images:
            break
        try:
            chosen.append((files[index], to_tensor(resize_center_crop(load_rgb(files[index]), size))))
        except ImageReadError as err:
            skipped.append(str(err))
    if skipped:
        notes.append(f"skipped {len(skipped)} unreadable image(s), first: {skipped[0]}")
    if not chosen:
        raise UserError(f"none of the {len(files)} images in {folder} could be read (first: {skipped[0]})")
    chosen.sort(key=lambda item: item[0])
    return [path for path, _ in chosen], torch.stack([image for _, image in chosen]), notes


def add_noise(x0: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """clip(x0 + sigma n, -1, 1) for every sigma: x0, n [1, C, H, W] and sigmas [K] give [K, C, H, W]."""
    return (x0 + sigmas.view(-1, 1, 1, 1) * noise).clamp(-1, 1)


def noised_ssim(x0: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
    """SSIM(x0, clip(x0 + sigma n, -1, 1)) on [0, 1] images for every sigma ([K]); x0 and n are [1, C, H, W]."""
    return ssim_box((x0 + 1) / 2, (add_noise(x0, noise, sigmas) + 1) / 2, data_range=1.0, reduction="none")


class SSIMAlongSigmas:
    """:func:`noised_ssim` for any number of sigmas, evaluated ``chunk`` sigmas at a time (bounded memory).

    With ``compile=True`` the chunk function goes through ``torch.compile``, which fuses the noising, the box filters
    and the SSIM map into one kernel (tens of times faster than eager on CPU). Chunks are padded to one fixed shape,
    so it compiles once per image size; a few sigmas per chunk keep the kernel's buffers in the CPU cache. If
    compilation fails (no C++ compiler, say) it warns once and runs eagerly.
    """

    def __init__(self, chunk: int = 8, compile: bool = True):
        self.chunk = chunk
        self.compiled = compile
        self._fn = torch.compile(noised_ssim, dynamic=False) if compile else noised_ssim

    def __call__(self, x0: torch.Tensor, noise: torch.Tensor, sigmas: torch.Tensor) -> torch.Tensor:
        count = len(sigmas)
        sigmas = sigmas.to(device=x0.device, dtype=x0.dtype)
        if self.compiled:
            sigmas = torch.cat([sigmas, sigmas[-1:].expand((-count) % self.chunk)])
        with torch.no_grad():
            values = torch.cat([self._run(x0, noise, part) for part in sigmas.split(self.chunk)])
        return values[:count].double().cpu()

    def _run(self, x0, noise, sigmas):
        try:
            return self._fn(x0, noise, sigmas)
        except Exception as err:  # torch.compile reports a missing or broken toolchain only when first called
            if self._fn is noised_ssim:
                raise
            print(f"warning: torch.compile failed ({type(err).__name__}); computing SSIM eagerly (slower)",
                  file=sys.stderr)
            self._fn = noised_ssim
            return noised_ssim(x0, noise, sigmas)


# ---- grids ----------------------------------------------------------------------------------------------------------

def candidate_grids(phis: Iterable[Phi], steps: int, sigma_min: float, sigma_max: float):
    """(grids, skipped): each candidate's ``steps``-point grid evenly spaced in phi (float64, sigma_max first), and
    the reason for every candidate whose grid cannot be formed in float64 over [sigma_min, sigma_max]."""
    grids, skipped = {}, {}
    for phi in phis:
        try:
            grids[phi.name] = phi_grid(phi, steps, sigma_min, sigma_max)
        except ValueError as err:
            skipped[phi.name] = str(err)
    return grids, skipped


def schedule_grids(steps: int, sigma_min: float, sigma_max: float) -> dict[str, torch.Tensor]:
    """The sampler grids of DDPM, EDM (rho = 7) and phi* in forward order (sigma increasing, trailing 0 dropped).

    EDM and phi* span [sigma_min, sigma_max]; DDPM spans the range its beta schedule implies. All three are noised
    the same way, x0 + sigma n (EDM's coordinates; DDPM's x_t is this divided by sqrt(1 + sigma^2)).
    """
    schedules = {"ddpm": VPSchedule(), "edm": EDMSchedule(sigma_min=sigma_min, sigma_max=sigma_max),
                 "phi": PhiSchedule(PHI_STAR, sigma_min=sigma_min, sigma_max=sigma_max)}
    return {key: schedule.grid(steps)[:-1].double().flip(0) for key, schedule in schedules.items()}


def sweep_phis(cs: Sequence[float]) -> list[Phi]:
    """The sigma/(sigma+c) family at the given c (a candidate of the same name shares its SSIM values)."""
    return [rational(c) for c in cs]


# ---- scoring --------------------------------------------------------------------------------------------------------

def r_squared(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """R^2 of the least-squares line y = a x + b along the last dimension, batched over the others.

    For a line with intercept, 1 - SS_res / SS_tot equals the squared Pearson correlation S_xy^2 / (S_xx S_yy).
    NaN where x or y is constant (R^2 is undefined there).
    """
    x, y = torch.broadcast_tensors(x.double(), y.double())
    xc, yc = x - x.mean(-1, keepdim=True), y - y.mean(-1, keepdim=True)
    sxx, syy, sxy = (xc * xc).sum(-1), (yc * yc).sum(-1), (xc * yc).sum(-1)
    defined = (sxx > 0) & (syy > 0)
    r2 = sxy**2 / torch.where(defined, sxx * syy, torch.ones_like(sxx))
    return torch.where(defined, r2, torch.full_like(r2, math.nan))


def score_summary(name: str, r2: torch.Tensor, note: str = "") -> Score:
    """Mean and sample std of the finite R^2 values (NaN where none, std NaN below two)."""
    valid = r2[torch.isfinite(r2)]
    n = len(valid)
    mean = float(valid.mean()) if n else math.nan
    std = float(valid.std()) if n > 1 else math.nan
    return Score(name, mean, std, n, len(r2), note)


def rank_key(score: Score) -> float:
    """Sort key: higher mean R^2 first, unscored (NaN) last."""
    return math.inf if math.isnan(score.mean) else -score.mean


def rank(scores: Iterable[Score]) -> list[Score]:
    """Best mean R^2 first; candidates without a score last, in their given order."""
    return sorted(scores, key=rank_key)


# ---- the search -----------------------------------------------------------------------------------------------------

@dataclass
class SearchResult:
    """Everything the figures and tables are made of."""

    ranking: list[Score]  # all candidates, best first
    sweep: list[tuple[float, Score]]  # (c, score) of sigma/(sigma+c), in the given order of c
    schedule_sigmas: dict[str, torch.Tensor]  # [N] per schedule key, forward order
    schedule_ssim: dict[str, torch.Tensor]  # [I, N] SSIM along each schedule
    schedule_scores: dict[str, Score]  # R^2 of SSIM against the step index

    def best_c(self) -> tuple[float, Score]:
        """The c of the sweep with the highest mean R^2."""
        return min(self.sweep, key=lambda item: rank_key(item[1]))


def ssim_on_grids(images: torch.Tensor, noises: torch.Tensor, grids: dict[str, torch.Tensor],
                  evaluate: Callable, progress: bool = True) -> dict[str, torch.Tensor]:
    """SSIM of every image against its noised copies at every sigma of every grid: {name: [I, len(grid)]}.

    All grids' sigmas are evaluated together per image (shared ones, like the common endpoints, once).
    """
    names = list(grids)
    unique, where = torch.unique(torch.cat([grids[name].double() for name in names]), return_inverse=True)
    rows = [evaluate(x0[None], noise[None], unique)[where]
            for x0, noise in tqdm(zip(images, noises), total=len(images), desc="SSIM along grids",
                                  unit="image", disable=not progress)]
    table = torch.stack(rows)
    return dict(zip(names, table.split([len(grids[name]) for name in names], dim=1)))


def search(images: torch.Tensor, noises: torch.Tensor, candidates: Sequence[Phi], sweep_cs: Sequence[float],
           steps: int, sigma_min: float, sigma_max: float, evaluate: Callable, progress: bool = True) -> SearchResult:
    """Score every candidate (and the sigma/(sigma+c) sweep) on images [I, C, H, W] with their noises."""
    phis = {phi.name: phi for phi in [*candidates, *sweep_phis(sweep_cs)]}
    grids, skipped = candidate_grids(phis.values(), steps, sigma_min, sigma_max)
    schedules = schedule_grids(steps, sigma_min, sigma_max)
    ssim_values = ssim_on_grids(images, noises, {**grids, **{f"schedule:{k}": v for k, v in schedules.items()}},
                                evaluate, progress)

    scores = {name: score_summary(name, r_squared(phis[name](grid), ssim_values[name])) for name, grid in grids.items()}
    scores.update({name: score_summary(name, torch.full((len(images),), math.nan), f"not scored: {reason}")
                   for name, reason in skipped.items()})
    candidate_names = [phi.name for phi in candidates]
    step_index = torch.arange(steps, dtype=torch.float64)
    schedule_ssim = {key: ssim_values[f"schedule:{key}"] for key in schedules}
    return SearchResult(
        ranking=rank(scores[name] for name in candidate_names),
        sweep=[(c, scores[rational(c).name]) for c in sweep_cs],
        schedule_sigmas=schedules,
        schedule_ssim=schedule_ssim,
        schedule_scores={key: score_summary(key, r_squared(step_index, values))
                         for key, values in schedule_ssim.items()},
    )

