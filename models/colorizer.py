"""The project's LightningModule family.

:class:`DiffusionColorizer` trains the preconditioned denoiser with the denoising objective (pretraining) and owns
everything both stages share: the schedule, the EMA copy used for validation, testing and export, sampling, metrics,
image grids and test-output writing. Trajectory refinement (:mod:`models.refiner`) subclasses it and only changes
the training objective.
"""
from __future__ import annotations

import copy
import importlib
import math
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
import torch
import torchvision
from torch import nn

from utils import metrics
from utils.errors import UserError
from utils.images import save_image

from .denoiser import Cond, Denoiser
from .ema import ema_update
from .guidance import GuidedDenoiser, drop_conditions
from .samplers import get_sampler
from .schedules import NoiseSchedule, PhiSchedule
from .ssim_guidance import check_scale, check_target, is_oracle, ssim_guide
from .unet import UNet


def spec(obj: Any) -> dict:
    """{"class_path", "init_args"} of an object that records its init arguments (``obj.init_args``)."""
    cls = type(obj)
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": dict(obj.init_args)}


def from_spec(config: dict) -> Any:
    module, _, name = config["class_path"].rpartition(".")
    return getattr(importlib.import_module(module), name)(**config.get("init_args", {}))


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
        # The class, so that load_colorizer rebuilds subclasses too. (Not a hyperparameter: LightningCLI re-parses
        # those from --ckpt_path as init arguments.)
        checkpoint["model_class"] = f"{type(self).__module__}.{type(self).__qualname__}"

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

    def denoising_loss(self, batch: dict) -> torch.Tensor:
        """E || D(y + sigma n; sigma, cond) - y ||^2 with sigma from the schedule's training density (EDM eq. 2)."""
        y = batch["target"]
        cond = drop_conditions(Cond(batch["sketch"], batch["reference"]), self.hparams.p_drop_sketch,
                               self.hparams.p_drop_reference)
        sigma = self.schedule.sample_sigma(y.shape[0], device=y.device).view(-1, 1, 1, 1)
        denoised = self.denoiser(y + sigma * torch.randn_like(y), sigma, cond)
        per_sample = (denoised.float() - y.float()).square().mean(dim=(1, 2, 3))
        if self.hparams.loss_weighting == "edm":
            per_sample = per_sample * self.denoiser.loss_weight(sigma.view(-1))
        return per_sample.mean()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.denoising_loss(batch)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=batch["target"].shape[0])
        return loss

    def on_train_batch_end(self, outputs, batch, batch_idx) -> None:
        ema_update(self.ema, self.denoiser, self.hparams.ema_decay, self.global_step)

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


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """A checkpoint of this project read with ``weights_only=True``; one clear error for anything else."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found; pass the .ckpt written by pretrain.py or finetune.py")
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # unpickling refused or a corrupt file: both are the user's file, not our bug
        raise UserError(f"{path}: not a loadable checkpoint ({str(err).splitlines()[0]})") from None
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt or "hyper_parameters" not in ckpt:
        raise UserError(f"{path}: not a checkpoint of this project (no state_dict / hyper_parameters)")
    return ckpt


def load_weights(module: nn.Module, state_dict: dict, path: str | Path, what: str = "the model it describes") -> None:
    """``module.load_state_dict`` with strict keys and shapes; a mismatch is one :class:`UserError` line."""
    try:
        missing, unexpected = module.load_state_dict(state_dict, strict=False)
    except RuntimeError as err:  # same keys, different shapes
        detail = " ".join(str(err).split())
        raise UserError(f"{path}: weights do not match {what} ({detail[:300]})") from None
    if missing or unexpected:
        raise UserError(f"{path}: weights do not match {what} (missing {len(missing)} keys, e.g. "
                        f"{missing[:2]}; unexpected {len(unexpected)}, e.g. {unexpected[:2]})")


def load_colorizer(path: str | Path, map_location: str | torch.device = "cpu") -> DiffusionColorizer:
    """Rebuild a model from a checkpoint with ``weights_only=True`` and strict keys; one clear error otherwise."""
    ckpt = read_checkpoint(path, map_location)
    hp = {k: v for k, v in ckpt["hyper_parameters"].items() if not k.startswith("_")}
    cls_path = ckpt.get("model_class", f"{DiffusionColorizer.__module__}.DiffusionColorizer")
    module, _, name = cls_path.rpartition(".")
    cls = getattr(importlib.import_module(module), name)
    model = cls(net=from_spec(hp.pop("net")), schedule=from_spec(hp.pop("schedule")), **cls.inference_args(hp))
    load_weights(model, ckpt["state_dict"], path)
    return model.eval()
