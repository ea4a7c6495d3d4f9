"""Validation and test of the LightningModule family: metrics, image grids in the logger, and the test folders
(outputs for the three reference settings of :mod:`data.protocol` plus the inputs, so that a test folder is a
complete evaluation set).

:class:`EvaluationMixin` expects the module to provide ``sample`` and the hyperparameters ``grid_images``,
``grid_every_n_epochs``, ``test_output_dir``, ``guidance_ssim_scale`` and ``guidance_target``.
"""
from __future__ import annotations

from pathlib import Path

import torch

from utils import metrics
from utils.eval_layout import INPUT_FOLDERS, SETTINGS
from utils.errors import UserError
from utils.images import image_grid, quantize, save_image

from .denoiser import Cond
from .ssim_guidance import is_oracle, ssim_guide


class EvaluationMixin:
    @staticmethod
    def quality(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """PSNR, SSIM and the flat-region noise figure per image (NaN without flat regions), computed as
        ``evaluate_SSIM_PSNR.py`` computes them on the saved 8-bit files."""
        p, t = quantize(pred), quantize(target)
        return {"psnr": metrics.psnr(t, p).float(), "ssim": metrics.ssim(t, p).float(),
                "flat_noise": metrics.flat_noise(t, p)[0].float()}

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        cond = Cond(batch["sketch"], batch["reference"])
        out = self.sample(cond, seed=batch_idx)
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

    def on_test_start(self) -> None:
        root = self.test_output_root()
        clash = [d for d in SETTINGS if (root / d).is_dir() and any((root / d).iterdir())]
        if clash:
            raise UserError(f"test output folder {root} already holds results ({', '.join(clash)}); "
                            "pass another --model.test_output_dir or remove it")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        root = self.test_output_root()
        prefix = "test_oracle" if self.oracle else "test"
        for setting, (key, target) in SETTINGS.items():
            guide = self.sampling_guide(batch, target)
            out = self.sample(Cond(batch["sketch"], batch[key]), seed=batch_idx, guide=guide)
            for name, img in zip(batch["name"], out):
                save_image(img, root / setting / f"{name}.png")
            scores = self.quality(out, batch[target])
            # Colour transfer: how far the output's colours are from the reference it was given (Delta E).
            scores["colour_distance"] = metrics.colour_distance(quantize(batch[key]), quantize(out)).float()
            for metric, values in scores.items():
                values = values[~values.isnan()]  # flat_noise: images without flat regions do not count
                if len(values):
                    self.log(f"{prefix}/{setting}/{metric}", values.mean(), batch_size=len(values), sync_dist=True)
            if batch_idx == 0:
                self.log_grid(f"{prefix}/{setting}_grid", {**batch, "reference": batch[key], "target": batch[target]},
                              out)
        # The inputs too, so that the folder is a complete evaluation set (and the trivial baselines can be scored).
        for key, folder in INPUT_FOLDERS.items():
            for name, img in zip(batch["name"], batch[key]):
                save_image(img, root / folder / f"{name}.png")
