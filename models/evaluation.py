"""Validation and test of the LightningModule family: metrics, image grids in the logger, and the test folders
(outputs for the reference settings of :mod:`data.protocol` that ``test_settings`` names, plus the inputs, so that
a test folder is a complete evaluation set).

The multi-reference setting (opt-in) samples once with all K references, and scores two baselines next to it:
the best single reference (the model sampled once per reference with that one alone; per image the output of best
PSNR is kept, an oracle choice among K) and the references pasted (at each pixel the mean of those that show it as
the output, no model). Its colour distance is to the shown pixels of the K references pooled.

:class:`EvaluationMixin` expects the module to provide ``sample`` and the hyperparameters ``grid_images``,
``grid_every_n_epochs``, ``test_output_dir``, ``guidance_ssim_scale``, ``guidance_target`` and ``test_settings``.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import torch

from utils import metrics
from utils.eval_layout import (INPUT_FOLDERS, MULTI, MULTI_FOLDERS, MULTI_MASK, MULTI_OUTPUTS, MULTI_REFERENCE_KEYS,
                               MULTI_REFERENCES, MULTI_SINGLES, MULTI_TRUTH, SETTINGS)
from utils.errors import OptionError, UserError
from utils.images import image_grid, quantize, save_image

from .denoiser import Cond
from .ssim_guidance import is_oracle, ssim_guide


#: The settings ``test`` can score, and those it scores by default (multi samples 1 + K times per image: opt-in).
TEST_SETTINGS = (*SETTINGS, MULTI)
TestSetting = Literal[TEST_SETTINGS]
DEFAULT_TEST_SETTINGS = list(SETTINGS)


def check_test_settings(settings: list[str]) -> None:
    """Refuse an empty, repeating or unknown list of test settings."""
    if not settings or len(set(settings)) != len(settings) or not set(settings) <= set(TEST_SETTINGS):
        raise OptionError("test_settings", f"must be a non-empty list of distinct settings among "
                          f"{', '.join(TEST_SETTINGS)}, got {list(settings)!r}")


def batch_cond(batch: dict, reference: str = "reference", references: str = "references",
               mask: str = "ref_mask") -> Cond:
    """The conditioning of a batch: its sketch, its colour hints if any, and ``batch[references]``
    [B, K, 3, H, W] with ``batch[mask]`` [B, K] where the batch holds several references (:mod:`data.collate`),
    else ``batch[reference]`` [B, 3, H, W]."""
    if references in batch:
        return Cond(batch["sketch"], batch[references], batch.get("hints"), batch.get(mask))
    return Cond(batch["sketch"], batch[reference], batch.get("hints"))


class EvaluationMixin:
    @staticmethod
    def quality(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """PSNR, SSIM and the flat-region noise figure per image (NaN without flat regions), computed as
        ``evaluate_SSIM_PSNR.py`` computes them on the saved 8-bit files."""
        p, t = quantize(pred), quantize(target)
        return {"psnr": metrics.psnr(t, p).float(), "ssim": metrics.ssim(t, p).float(),
                "flat_noise": metrics.flat_noise(t, p)[0].float()}

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        out = self.sample(batch_cond(batch), seed=batch_idx)
        scores = self.quality(out, batch["target"])
        n = out.shape[0]
        self.log("val/psnr", scores["psnr"].mean(), prog_bar=True, batch_size=n, sync_dist=True)
        self.log("val/ssim", scores["ssim"].mean(), batch_size=n, sync_dist=True)
        if batch_idx == 0 and self.current_epoch % self.hparams.grid_every_n_epochs == 0:
            self.log_grid("val/grid", batch, out)

    def log_grid(self, tag: str, batch: dict, out: torch.Tensor) -> None:
        """Rows of sketch | reference | output | target to the logger (TensorBoard)."""
        experiment = getattr(self.logger, "experiment", None)
        if experiment is None or not hasattr(experiment, "add_image") or self.global_rank != 0:
            return
        grid = image_grid(batch["sketch"], batch["reference"], out, batch["target"], self.hparams.grid_images)
        experiment.add_image(tag, grid, self.global_step)

    @property
    def oracle(self) -> bool:
        """Whether test sampling is guided by the ground truth (outputs and metrics are then marked "oracle")."""
        return is_oracle(self.hparams.guidance_ssim_scale, self.hparams.guidance_target)

    def sampling_guide(self, batch: dict, target: str = "target"):
        """The SSIM guide of ``test`` for this batch (None when guidance is off); an oracle guide is towards
        ``batch[target]``, the ground truth of the setting."""
        return ssim_guide(self.hparams.guidance_ssim_scale, batch["sketch"], self.hparams.guidance_target,
                          batch.get(target))

    def test_output_root(self) -> Path:
        if self.hparams.test_output_dir:
            root = Path(self.hparams.test_output_dir)
        else:
            log_dir = getattr(self.logger, "log_dir", None) if self.logger else None
            root = Path(log_dir or self.trainer.default_root_dir) / "test_outputs"
        return root.with_name(root.name + "-oracle") if self.oracle else root

    def test_settings(self) -> list[str]:
        return list(self.hparams.get("test_settings", DEFAULT_TEST_SETTINGS))

    def output_folders(self) -> list[str]:
        """The output sub-folders ``test`` writes."""
        settings = self.test_settings()
        return [s for s in settings if s != MULTI] + (list(MULTI_OUTPUTS + MULTI_SINGLES) if MULTI in settings else [])

    def on_test_start(self) -> None:
        net = getattr(getattr(self, "ema", None), "net", None)
        if MULTI in self.test_settings() and not getattr(net, "takes_several_references", False):
            raise UserError("test setting 'multi' needs a network that takes several references (a correspondence "
                            "warp, ref_warp); leave multi out of --model.test_settings for this model")
        root = self.test_output_root()
        clash = [d for d in self.output_folders() if (root / d).is_dir() and any((root / d).iterdir())]
        if clash:
            raise UserError(f"test output folder {root} already holds results ({', '.join(clash)}); "
                            "pass another --model.test_output_dir or remove it")

    def write_and_score(self, setting: str, out: torch.Tensor, batch: dict, target: str,
                        colour_distance: torch.Tensor) -> dict[str, torch.Tensor]:
        """Save a setting's outputs under its folder and log their scores against ``batch[target]``, with the
        colour distance to what they were given (Delta E); returns the per-image scores."""
        for name, img in zip(batch["name"], out):
            save_image(img, self.test_output_root() / setting / f"{name}.png")
        scores = {**self.quality(out, batch[target]), "colour_distance": colour_distance.float()}
        prefix = "test_oracle" if self.oracle else "test"
        for metric, values in scores.items():
            values = values[~values.isnan()]  # flat_noise: images without flat regions do not count
            if len(values):
                self.log(f"{prefix}/{setting}/{metric}", values.mean(), batch_size=len(values), sync_dist=True)
        return scores

    def test_step(self, batch: dict, batch_idx: int) -> None:
        root = self.test_output_root()
        prefix = "test_oracle" if self.oracle else "test"
        settings = self.test_settings()
        if MULTI in settings and MULTI_REFERENCES not in batch:
            raise UserError("test setting 'multi' needs the multi-reference test arrays: pass --data.test_multi true")
        for setting in settings:
            if setting == MULTI:
                self.test_multi(batch, batch_idx)
                continue
            key, target = SETTINGS[setting]
            guide = self.sampling_guide(batch, target)
            out = self.sample(batch_cond(batch, key), seed=batch_idx, guide=guide)
            # Colour transfer: how far the output's colours are from the reference it was given (Delta E).
            self.write_and_score(setting, out, batch, target,
                                 metrics.colour_distance(quantize(batch[key]), quantize(out)))
            if batch_idx == 0:
                self.log_grid(f"{prefix}/{setting}_grid", {**batch, "reference": batch[key], "target": batch[target]},
                              out)
        # The inputs too, so that the folder is a complete evaluation set (and the trivial baselines can be scored).
        inputs = {folder: batch[key] for key, folder in INPUT_FOLDERS.items()}
        if MULTI in settings:
            inputs[MULTI_FOLDERS[MULTI_TRUTH]] = batch[MULTI_TRUTH]
            rgba = torch.cat([batch[MULTI_REFERENCES], batch[MULTI_MASK][:, :, None] * 2.0 - 1.0], dim=2)
            inputs.update(zip((MULTI_FOLDERS[k] for k in MULTI_REFERENCE_KEYS), rgba.unbind(1)))  # RGBA PNGs
        for folder, images in inputs.items():
            for name, img in zip(batch["name"], images):
                save_image(img, root / folder / f"{name}.png")

    def test_multi(self, batch: dict, batch_idx: int) -> None:
        """The multi-reference setting and its two baselines (module docstring); the protocol's sets of references
        have no padding, and each shows a part of its pixels (batch[MULTI_MASK] [B, K, H, W])."""
        references, shown = batch[MULTI_REFERENCES], batch[MULTI_MASK]
        given = quantize(references)

        def score(setting: str, out: torch.Tensor) -> dict[str, torch.Tensor]:
            return self.write_and_score(setting, out, batch, MULTI_TRUTH,
                                        metrics.pooled_colour_distance(given, quantize(out), shown))

        guide = self.sampling_guide(batch, MULTI_TRUTH)
        score(MULTI, self.sample(batch_cond(batch, references=MULTI_REFERENCES, mask=MULTI_MASK), seed=batch_idx,
                                 guide=guide))
        # (a) each reference alone (the same noise): per image, the output of best PSNR
        singles = torch.stack([self.sample(Cond(batch["sketch"], references[:, k:k + 1], None, shown[:, k:k + 1]),
                                           seed=batch_idx, guide=guide)
                               for k in range(references.shape[1])], dim=1)
        psnr = torch.stack([score(MULTI_SINGLES[k], singles[:, k])["psnr"] for k in range(singles.shape[1])], dim=1)
        best = psnr.argmax(dim=1).to(singles.device)
        score(MULTI_OUTPUTS[1], singles[torch.arange(len(best), device=singles.device), best])
        # (b) the references pasted: at each pixel, the mean of the references that show it (mid-grey where none)
        weight = shown[:, :, None].to(references.dtype)
        score(MULTI_OUTPUTS[2], (references * weight).sum(dim=1) / weight.sum(dim=1).clamp_min(1))
