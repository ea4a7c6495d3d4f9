"""The project's LightningModule family.

:class:`DiffusionColorizer` trains the preconditioned denoiser with the denoising objective (pretraining, EDM eq. 2)
and holds what both stages share: the schedule, the EMA copy used for validation, testing and export, and the
optimizer. Sampling is :func:`models.sampling.sample`, validation and test outputs are
:class:`models.evaluation.EvaluationMixin`, the stop on a non-finite loss is :class:`models.nonfinite.NonFiniteGuard`,
checkpoint loading is :mod:`models.checkpoint` (writing: :mod:`training.checkpoint_io`). Trajectory refinement
(:mod:`models.refiner`) subclasses it and only changes the training objective.
"""
from __future__ import annotations

import copy
import math
from typing import Literal

import pytorch_lightning as pl
import torch

from utils.errors import OptionError, UserError

from .checkpoint import class_path, load_colorizer, spec
from .controls import INIT_KINDS, InitKind, has_warp, start_image
from .denoiser import Cond, Denoiser, Prediction
from .ema import ema_update
from .evaluation import EvaluationMixin, TestSetting, batch_cond, check_test_settings
from .guidance import drop_conditions
from .network import Network
from .nonfinite import NonFiniteGuard
from .sampling import check_pairing, sample
from .schedules import GRIDS, Grid, NoiseSchedule, PhiSchedule
from .solvers import SamplerName, get_sampler
from .ssim_guidance import GuidanceTarget, check_scale, check_target
from .unet import UNet

#: How the denoising loss weights the noise levels: uniformly ("none", the official code) or by EDM's 1 / c_out^2.
LOSS_WEIGHTINGS = ("none", "edm")
LossWeighting = Literal[LOSS_WEIGHTINGS]


class DiffusionColorizer(NonFiniteGuard, EvaluationMixin, pl.LightningModule):
    """Sketch + reference -> colour image with an EDM-preconditioned diffusion model.

    Args:
        net: the network F (None: the paper's U-Net); a class of your own needs a :class:`models.network.Network`
            forward.
        schedule: the noise schedule (None: SSIMBaD's phi*(sigma) = sigma / (sigma + 0.3)).
        prediction: "edm" (x0 preconditioning of EDM), "x0" (the clean image, no skip path) or "eps" (VP / DDPM
            noise prediction).
        sigma_data: EDM's data standard deviation.
        loss_weighting: "none" (the official code: plain MSE on D) or "edm" (lambda(sigma) = 1 / c_out^2).
        p_drop_sketch: probability of dropping the sketch in training (classifier-free guidance).
        p_drop_reference: probability of dropping the reference in training (independently).
        lr: AdamW's peak learning rate.
        weight_decay: AdamW's weight decay.
        betas: AdamW's betas.
        warmup_epochs: linear warm-up (fractions allowed), then cosine decay to ``min_lr`` at the last step.
        min_lr: the learning rate at the last step.
        ema_decay: EMA of the weights (used for validation, test and export).
        sampler: the sampler of validation and test.
        steps: grid points of validation and test sampling.
        grid: the noise levels validation and test sample on: "phi" (the schedule's own grid) or "edm" (EDM's eq. 5).
        rho: the "edm" grid's rho (Karras et al. 2022 use 7; larger spends more steps at low noise).
        guidance_sketch: classifier-free guidance scale of the sketch (1: plain conditional).
        guidance_reference: classifier-free guidance scale of the reference (1: plain conditional).
        grid_every_n_epochs: epochs between image grids (sketch, reference, output, target) in the logger.
        grid_images: images per grid.
        test_output_dir: where ``test`` writes ``same/`` and ``cross/`` outputs (None: the logger's folder).
        test_settings: the protocol settings ``test`` scores; "multi" (with ``--data.test_multi``) samples 1 + K times.
        guidance_ssim_scale: SSIM guidance step s of ``test`` (0: off; :data:`models.ssim_guidance.DEFAULT_SCALE` is
            the value measured on the 64 px demo).
        guidance_target: "sketch" (XDoG of the prediction vs the input sketch) or "gt" (an oracle for analysis:
            the test folder gets an "-oracle" suffix and the metrics are logged as ``test_oracle/...``).
        realism: DiSS's realism weight in [0, 1] at sampling (0: the sketch as drawn; :mod:`models.controls`).
        sigma_start: adjustable noise start (PASD): sample from ``init`` noised to this sigma, on the grid
            truncated there (None: pure noise at sigma_max).
        init: what a noise start begins from, one of :data:`models.controls.INIT_KINDS`: "reference", "flat" (its
            mean colour) or "warp" (the network's correspondence warp of it, for ``ref_warp`` networks).
        compile: compile the training network with ``torch.compile`` (in place, so checkpoint keys do not change)
            when the trainer sets the model up; the EMA copy that samples stays eager.
    """

    def __init__(
        self,
        net: Network | None = None,
        schedule: NoiseSchedule | None = None,
        prediction: Prediction = "edm",
        sigma_data: float = 0.5,
        loss_weighting: LossWeighting = "none",
        p_drop_sketch: float = 0.1,
        p_drop_reference: float = 0.1,
        lr: float = 1e-4,
        weight_decay: float = 0.01,
        betas: tuple[float, float] = (0.9, 0.999),
        warmup_epochs: float = 1.0,
        min_lr: float = 1e-8,
        ema_decay: float = 0.999,
        sampler: SamplerName = "heun",
        steps: int = 18,
        grid: Grid = "phi",
        rho: float = 7.0,
        guidance_sketch: float = 1.0,
        guidance_reference: float = 1.0,
        grid_every_n_epochs: int = 1,
        grid_images: int = 8,
        test_output_dir: str | None = None,
        test_settings: list[TestSetting] = ["same", "cross", "recolour"],  # noqa: B006 - never mutated
        guidance_ssim_scale: float = 0.0,
        guidance_target: GuidanceTarget = "sketch",
        realism: float = 0.0,
        sigma_start: float | None = None,
        init: InitKind = "reference",
        compile: bool = False,
    ):
        super().__init__()
        net = net if net is not None else UNet()
        schedule = schedule if schedule is not None else PhiSchedule()
        if loss_weighting not in LOSS_WEIGHTINGS:
            raise OptionError("loss_weighting", f"must be one of {', '.join(LOSS_WEIGHTINGS)}, got {loss_weighting!r}")
        get_sampler(sampler)
        if grid not in GRIDS:
            raise OptionError("grid", f"must be one of {', '.join(GRIDS)}, got {grid!r}")
        if not rho > 0:
            raise OptionError("rho", f"must be positive, got {rho}")
        check_pairing(schedule, sampler, grid)
        check_target(guidance_target)
        check_scale(guidance_ssim_scale)
        check_test_settings(test_settings)
        if not 0.0 <= realism <= 1.0:
            raise OptionError("realism", f"must be in [0, 1], got {realism}")
        if sigma_start is not None and sigma_start <= 0:
            raise OptionError("sigma_start", f"must be positive (or None for pure noise), got {sigma_start}")
        if init not in INIT_KINDS:
            raise OptionError("init", f"must be one of {', '.join(INIT_KINDS)}, got {init!r}")
        if init == "warp" and not has_warp(net):
            raise OptionError("init", "'warp' needs a network with a correspondence warp (ref_warp)")
        self.save_hyperparameters(ignore=["net", "schedule"])
        # Record the network and schedule as plain configs so checkpoints load with weights_only=True.
        self.hparams["net"], self.hparams["schedule"] = spec(net), spec(schedule)
        self.schedule = schedule
        self.denoiser = Denoiser(net, schedule, sigma_data, prediction)
        self.ema = copy.deepcopy(self.denoiser).requires_grad_(False)

    def configure_model(self) -> None:
        """Lightning's hook before fit / validate / test: compile the network once, if asked."""
        if self.hparams.get("compile") and getattr(self.denoiser.net, "_compiled_call_impl", None) is None:
            self.denoiser.net.compile()

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        if self._trainer is not None and self._trainer.training:
            self._check_divergence()  # never write a checkpoint after a non-finite step
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

    def sample(
        self, cond: Cond, *, steps: int | None = None, sampler: str | None = None, seed: int | None = None,
        use_ema: bool = True, guidance: tuple[float, float] | None = None, guide=None, callback=None,
        realism: float | None = None, init: torch.Tensor | None = None, sigma_start: float | None = None,
        grid: str | None = None, rho: float | None = None, **sampler_options,
    ) -> torch.Tensor:
        """Colorize ``cond`` with the EMA (or raw) denoiser; None keeps the configured steps, sampler,
        classifier-free guidance scales (sketch, reference), realism, noise start (from ``init``, by default the
        configured ``init``) and grid. See :func:`models.sampling.sample`."""
        hp = self.hparams
        realism = hp.get("realism", 0.0) if realism is None else realism
        sigma_start = hp.get("sigma_start") if sigma_start is None else sigma_start
        denoiser = self.ema if use_ema else self.denoiser
        if sigma_start is not None and init is None:
            init = start_image(hp.get("init", "reference"), cond.sketch, cond.reference, denoiser.net, cond.ref_mask)
        return sample(denoiser, self.schedule, cond, steps or hp.steps,
                      sampler or hp.sampler, seed=seed, device=self.device,
                      guidance=guidance or (hp.guidance_sketch, hp.guidance_reference), guide=guide,
                      callback=callback, realism=realism, init=init, sigma_start=sigma_start,
                      grid=grid or hp.get("grid", "phi"), rho=rho or hp.get("rho", 7.0), **sampler_options)

    # -- training ----------------------------------------------------------------------------------------------------

    def transfer_batch_to_device(self, batch, device: torch.device, dataloader_idx: int):
        """The batch to the device, except the per-sample seeds: the draws read them as Python ints, which from a
        device tensor would be a host sync every step."""
        seeds = batch.pop("seed") if isinstance(batch, dict) and "seed" in batch else None
        batch = super().transfer_batch_to_device(batch, device, dataloader_idx)
        if seeds is not None:
            batch["seed"] = seeds
        return batch

    def training_draws(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(sigma (B,), noise like the target, U(0, 1) dropout draws (2, B)) for a training batch.

        A batch from the training stream carries one seed per sample (:mod:`data.stream`); each sample's draws then
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
        """E || D(y + sigma n; sigma, cond) - y ||^2 with sigma from the schedule's training density (EDM eq. 2); the
        cold baseline (:mod:`models.cold`) replaces y + sigma n by its deterministic blend."""
        y = batch["target"]
        sigma, noise, uniform = self.training_draws(batch)
        if self.denoiser.takes_hints != ("hints" in batch):
            raise UserError("the network takes colour hints (11 input channels) but the data draws none: set "
                            "--data.hint_points" if self.denoiser.takes_hints else
                            "the data draws colour hints (--data.hint_points) but the network has no hint channels: "
                            "use configs/variants/hints.yaml (in_channels 11)")
        cond = drop_conditions(batch_cond(batch),
                               self.hparams.p_drop_sketch, self.hparams.p_drop_reference, uniform=uniform)
        sigma = sigma.view(-1, 1, 1, 1)
        denoised = self.denoiser(self.schedule.corrupt(y, sigma, noise, cond), sigma, cond)
        per_sample = (denoised.float() - y.float()).square().mean(dim=(1, 2, 3))
        if self.hparams.loss_weighting == "edm":
            per_sample = per_sample * self.denoiser.loss_weight(sigma.view(-1))
        return per_sample.mean()

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.denoising_loss(batch)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=batch["target"].shape[0])
        return loss

    def optimizer_step(self, *args, **kwargs) -> None:
        """The optimizer step, then the EMA update: both are done before any callback (a checkpoint) sees the step."""
        super().optimizer_step(*args, **kwargs)
        ema_update(self.ema, self.denoiser, self.hparams.ema_decay, self.ema_step(), skip=self._step_nonfinite)

    def ema_step(self) -> int:
        """The step count that warms the EMA decay up (optimizer steps before this one)."""
        return self.global_step

    def configure_optimizers(self):
        hp = self.hparams
        params = list(self.denoiser.parameters())
        # one fused kernel for the whole update; it can also skip a non-finite step on the device (found_inf)
        fused = all(p.device.type in ("cpu", "cuda") for p in params)
        opt = torch.optim.AdamW(params, lr=hp.lr, weight_decay=hp.weight_decay, betas=tuple(hp.betas),
                                fused=fused or None)
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
