"""The project's LightningModule family.

:class:`DiffusionColorizer` trains the preconditioned denoiser with the denoising objective (pretraining) and owns
everything both stages share: the schedule, the EMA copy used for validation, testing and export, sampling, metrics,
image grids and test-output writing. Trajectory refinement (:mod:`models.refiner`) subclasses it and only changes
the training objective.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import pytorch_lightning as pl
import torch
import torchvision
from torch import nn

from utils import metrics
from utils.errors import TrainingDiverged, UserError
from utils.images import save_image

from .checkpoint import class_path, load_colorizer, spec
from .denoiser import Cond, Denoiser
from .ema import ema_update
from .guidance import GuidedDenoiser, drop_conditions
from .samplers import get_sampler
from .schedules import NoiseSchedule, PhiSchedule
from .ssim_guidance import check_scale, check_target, is_oracle, ssim_guide
from .unet import UNet


def to_unit(x: torch.Tensor) -> torch.Tensor:
    return ((x.float() + 1) / 2).clamp(0, 1)


def quantize(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float -> uint8 values (as a PNG stores them), on the CPU."""
    return (to_unit(x.detach().cpu()) * 255).round().to(torch.uint8)


class DiffusionColorizer(pl.LightningModule):
    """Sketch + reference -> colour image with an EDM-preconditioned diffusion model.

    Args:
        net: the network F (default: the paper's U-Net).
        schedule: the noise schedule (default: SSIMBaD's phi*(sigma) = sigma / (sigma + 0.3)).
        prediction: "edm" (x0 preconditioning of EDM) or "eps" (VP / DDPM noise prediction).
        sigma_data: EDM's data standard deviation.
        loss_weighting: "none" (the official code: plain MSE on D) or "edm" (lambda(sigma) = 1 / c_out^2).
        p_drop_sketch, p_drop_reference: condition dropout for classifier-free guidance (independent).
        lr, weight_decay, betas: AdamW.
        warmup_epochs: linear warm-up (fractions allowed), then cosine decay to ``min_lr`` at the last step.
        ema_decay: EMA of the weights (used for validation, test and export).
        sampler, steps: sampler ("heun" | "euler") and number of grid points for validation and test.
        guidance_sketch, guidance_reference: classifier-free guidance scales at sampling (1 = plain conditional).
        grid_every_n_epochs, grid_images: image grid (sketch | reference | output | target) in the logger.
        test_output_dir: where ``test`` writes ``same/`` and ``cross/`` outputs (None: the logger's folder).
        guidance_ssim_scale: SSIM guidance step s of ``test`` (0: off; :data:`models.ssim_guidance.DEFAULT_SCALE` is
            the value measured on the 64 px demo).
        guidance_target: "sketch" (XDoG of the prediction vs the input sketch) or "gt" (an oracle for analysis:
            the test folder gets an "-oracle" suffix and the metrics are logged as ``test_oracle/...``).
    """

    def __init__(
        self,
        net: nn.Module | None = None,
        schedule: NoiseSchedule | None = None,
        prediction: str = "edm",
        sigma_data: float = 0.5,
        loss_weighting: str = "none",
        p_drop_sketch: float = 0.1,
        p_drop_reference: float = 0.1,
        lr: float = 1e-4,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        warmup_epochs: float = 1.0,
        min_lr: float = 1e-8,
        ema_decay: float = 0.999,
        sampler: str = "heun",
        steps: int = 18,
        guidance_sketch: float = 1.0,
        guidance_reference: float = 1.0,
        grid_every_n_epochs: int = 1,
        grid_images: int = 8,
        test_output_dir: str | None = None,
        guidance_ssim_scale: float = 0.0,
        guidance_target: str = "sketch",
    ):
        super().__init__()
        net = net if net is not None else UNet()
        schedule = schedule if schedule is not None else PhiSchedule()
        if loss_weighting not in ("none", "edm"):
            raise ValueError(f"loss_weighting must be 'none' or 'edm', got {loss_weighting!r}")
        get_sampler(sampler)
        check_target(guidance_target)
        check_scale(guidance_ssim_scale)
        self.save_hyperparameters(ignore=["net", "schedule"])
        # Record the network and schedule as plain configs so checkpoints load with weights_only=True.
        self.hparams["net"], self.hparams["schedule"] = spec(net), spec(schedule)
        self.schedule = schedule
        self.denoiser = Denoiser(net, schedule, sigma_data, prediction)
        self.ema = copy.deepcopy(self.denoiser).requires_grad_(False)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # The class, so that models.checkpoint rebuilds subclasses too. (Not a hyperparameter: LightningCLI re-parses
        # those from --ckpt_path as init arguments.)
        checkpoint["model_class"] = class_path(self)

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path, map_location=None, **_ignored):
        """The safe loader of :mod:`models.checkpoint` (Lightning's would import the names the file gives)."""
        return load_colorizer(checkpoint_path, map_location or "cpu")

    @classmethod
    def inference_args(cls, hparams: dict) -> dict:
        """The saved hyperparameters that rebuild the model for sampling (subclasses drop training-only ones)."""
        return hparams

    # -- sampling --------------------------------------------------------------------------------------------------

    def sample(
        self, cond: Cond, *, steps: int | None = None, sampler: str | None = None, seed: int | None = None,
        use_ema: bool = True, guide=None, callback=None, **sampler_options,
    ) -> torch.Tensor:
        """Colorize: run the sampler from x_T = sigma_max * noise; seeded noise makes the output reproducible."""
        if guide is not None and torch.is_inference_mode_enabled():
            # Gradient guidance differentiates through the denoiser: leave inference mode (Lightning tests in it).
            with torch.inference_mode(False):
                return self.sample(Cond(*(t.clone() for t in cond)), steps=steps, sampler=sampler, seed=seed,
                                   use_ema=use_ema, guide=guide, callback=callback, **sampler_options)
        hp = self.hparams
        denoiser: nn.Module = self.ema if use_ema else self.denoiser
        if (hp.guidance_sketch, hp.guidance_reference) != (1.0, 1.0):
            denoiser = GuidedDenoiser(denoiser, hp.guidance_sketch, hp.guidance_reference)
        sigmas = self.schedule.grid(steps or hp.steps, device=self.device)
        b, _, h, w = cond.reference.shape
        gen = torch.Generator().manual_seed(seed) if seed is not None else None
        x = torch.randn((b, 3, h, w), generator=gen).to(self.device) * sigmas[0]
        return get_sampler(sampler or hp.sampler)(denoiser, x, sigmas, cond, guide=guide, callback=callback,
                                                  **sampler_options)

    # -- training ----------------------------------------------------------------------------------------------------

    def training_draws(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(sigma (B,), noise like the target, U(0, 1) dropout draws (2, B)) for a training batch.

        A batch from the training stream carries one seed per sample (:mod:`data.sampler`); each sample's draws then
        come from its own generators, so they depend on its stream position only (exact resume, DDP = one process
        on the union batch). Batches without seeds draw from the global generator."""
        y = batch["target"]
        if "seed" not in batch:
            noise = torch.randn_like(y)
            return self.schedule.sample_sigma(y.shape[0], device=y.device), noise, torch.rand(2, y.shape[0])
        sigmas, noises, drops = [], [], []
        for seed in batch["seed"].tolist():
            cpu = torch.Generator().manual_seed(seed)
            sigmas.append(self.schedule.sample_sigma(1, generator=cpu))
            drops.append(torch.rand(2, 1, generator=cpu))
            device_gen = torch.Generator(device=y.device).manual_seed(seed ^ 1)
            noises.append(torch.randn(y.shape[1:], generator=device_gen, device=y.device, dtype=y.dtype))
        return torch.cat(sigmas).to(y.device), torch.stack(noises), torch.cat(drops, dim=1)

    def denoising_loss(self, batch: dict) -> torch.Tensor:
        """E || D(y + sigma n; sigma, cond) - y ||^2 with sigma from the schedule's training density (EDM eq. 2)."""
        y = batch["target"]
        sigma, noise, uniform = self.training_draws(batch)
        cond = drop_conditions(Cond(batch["sketch"], batch["reference"]), self.hparams.p_drop_sketch,
                               self.hparams.p_drop_reference, uniform=uniform)
        sigma = sigma.view(-1, 1, 1, 1)
        denoised = self.denoiser(y + sigma * noise, sigma, cond)
        per_sample = (denoised.float() - y.float()).square().mean(dim=(1, 2, 3))
        if self.hparams.loss_weighting == "edm":
            per_sample = per_sample * self.denoiser.loss_weight(sigma.view(-1))
        return per_sample.mean()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.denoising_loss(batch)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=batch["target"].shape[0])
        return loss

    def on_before_backward(self, loss: torch.Tensor) -> None:
        """Stop on a NaN or infinite loss before it reaches the gradients, the weights, the EMA or a checkpoint."""
        if not bool(torch.isfinite(loss.detach())):
            raise TrainingDiverged(
                f"training stopped: the loss is {float(loss.detach())} at step {self.global_step} (epoch {self.current_epoch}); "
                "the weights and the EMA were not updated with it and the checkpoints on disk are from earlier steps. "
                "Resume from last.ckpt with a lower --model.lr, or check the training images")

    def optimizer_step(self, *args, **kwargs) -> None:
        """The optimizer step, then the EMA update: both are done before any callback (a checkpoint) sees the step."""
        super().optimizer_step(*args, **kwargs)
        ema_update(self.ema, self.denoiser, self.hparams.ema_decay, self.ema_step())

    def ema_step(self) -> int:
        """The step count that warms the EMA decay up (optimizer steps before this one)."""
        return self.global_step

    def configure_optimizers(self):
        hp = self.hparams
        opt = torch.optim.AdamW(self.denoiser.parameters(), lr=hp.lr, weight_decay=hp.weight_decay,
                                betas=tuple(hp.betas))
        total = max(1, int(self.trainer.estimated_stepping_batches))
        epochs = max(1, self.trainer.max_epochs or 1)
        warmup = min(total - 1, int(round(hp.warmup_epochs * total / epochs))) if hp.warmup_epochs > 0 else 0
        floor = hp.min_lr / hp.lr

        def factor(step: int) -> float:  # linear warm-up, then cosine from lr to min_lr over the remaining steps
            if step < warmup:
                return (step + 1) / (warmup + 1)
            progress = min(1.0, (step - warmup) / max(1, total - warmup))
            return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # -- validation and test -----------------------------------------------------------------------------------------

    @staticmethod
    def quality(pred: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """PSNR and SSIM per image, computed as ``evaluate_SSIM_PSNR.py`` computes them on the saved 8-bit files."""
        p, t = quantize(pred), quantize(target)
        return {"psnr": metrics.psnr(t, p).float(), "ssim": metrics.ssim(t, p).float()}

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

    def sampling_guide(self, batch: dict):
        """The SSIM guide of ``test`` for this batch (None when guidance is off)."""
        return ssim_guide(self.hparams.guidance_ssim_scale, batch["sketch"], self.hparams.guidance_target,
                          batch.get("target"))

    def test_output_root(self) -> Path:
        if self.hparams.test_output_dir:
            root = Path(self.hparams.test_output_dir)
        else:
            log_dir = getattr(self.logger, "log_dir", None) if self.logger else None
            root = Path(log_dir or self.trainer.default_root_dir) / "test_outputs"
        return root.with_name(root.name + "-oracle") if self.oracle else root

    def on_test_start(self) -> None:
        root = self.test_output_root()
        clash = [d for d in ("same", "cross") if (root / d).is_dir() and any((root / d).iterdir())]
        if clash:
            raise UserError(f"test output folder {root} already holds results ({', '.join(clash)}); "
                            "pass another --model.test_output_dir or remove it")

    def test_step(self, batch: dict, batch_idx: int) -> None:
        root, n = self.test_output_root(), batch["target"].shape[0]
        guide, prefix = self.sampling_guide(batch), "test_oracle" if self.oracle else "test"
        for setting, key in (("same", "reference"), ("cross", "reference_cross")):
            out = self.sample(Cond(batch["sketch"], batch[key]), seed=batch_idx, guide=guide)
            for name, img in zip(batch["name"], out):
                save_image(img, root / setting / f"{name}.png")
            for metric, values in self.quality(out, batch["target"]).items():
                self.log(f"{prefix}/{setting}/{metric}", values.mean(), batch_size=n, sync_dist=True)
            if batch_idx == 0:
                self.log_grid(f"{prefix}/{setting}_grid", {**batch, "reference": batch[key]}, out)
        # The inputs too, so that the folder is a complete evaluation set (and the trivial baselines can be scored).
        for folder, key in (("gt", "target"), ("sketch", "sketch"), ("reference_same", "reference"),
                            ("reference_cross", "reference_cross")):
            for name, img in zip(batch["name"], batch[key]):
                save_image(img, root / folder / f"{name}.png")


def image_grid(sketch, reference, output, target, max_rows: int = 8) -> torch.Tensor:
    """A [3, H, W] grid in [0, 1] whose rows are sketch | reference | output | target."""
    n = min(max_rows, output.shape[0])
    cols = [sketch[:n].expand(-1, 3, -1, -1), reference[:n], output[:n], target[:n]]
    tiles = torch.stack([to_unit(c.detach().cpu()) for c in cols], dim=1).flatten(0, 1)
    return torchvision.utils.make_grid(tiles, nrow=4, padding=2, pad_value=1.0)
