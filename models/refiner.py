"""Trajectory refinement (SSIMBaD's second stage: finetuning through the sampler's trajectory).

Per batch: x_T = sigma_max * n, K Euler steps on the sampler grid (``grid``) through the trained denoiser *with
gradients* (:func:`~models.solvers.sample_euler_diff`), a loss between the final x_0 and the ground truth, and a
backward pass through the whole trajectory. Memory stays bounded by recomputing each step's activations in the
backward pass (``checkpointing``, on by default) and optionally by backpropagating through the last ``grad_last_k``
steps only.

Losses (``strategy``):
- ``mse``: mean squared error in [-1, 1];
- ``lpips-vgg`` (also ``lpips-alex``, ``lpips-squeeze``): LPIPS of the ``lpips`` package, inputs in [-1, 1];
- ``clip``: 1 - cosine similarity of open_clip image features (CLIP normalisation, resized to the model's 224 px).
The loss networks are frozen, built when fitting starts (so sampling a finetuned checkpoint never needs them) and
kept out of the module's children, so they are neither trained nor saved in checkpoints.

The trajectory is sampled as at test time: with both conditions (no condition dropout) and without classifier-free
guidance. Everything else (EMA, sampling, validation, test outputs, SSIM-guided testing) is
:class:`DiffusionColorizer`'s; the EMA continues from the pretraining step count (no second decay warm-up).
"""
from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from utils.errors import OptionError, UserError
from utils.weights import LPIPS_TRUNKS, build_clip_image_encoder, build_lpips

from .checkpoint import Checkpoint, build_parts, class_path, load_weights, read_checkpoint
from .diffusion import DiffusionColorizer
from .network import Network
from .evaluation import batch_cond
from .schedules import NoiseSchedule, sampler_grid
from .solvers import SamplerName, sample_euler_diff

STRATEGIES = ("mse", "clip") + tuple(f"lpips-{net}" for net in LPIPS_TRUNKS)
Strategy = Literal[STRATEGIES]


class TrajectoryRefiner(DiffusionColorizer):
    """Finetunes a pretrained :class:`DiffusionColorizer` by backpropagating a loss through its sampler.

    Args:
        init_checkpoint: pretrained checkpoint (pretrain.py); its EMA weights initialise both the trained weights and
            the EMA. Read with ``weights_only=True``. Without a configured ``net`` and ``schedule`` they are the
            checkpoint's; configured ones must match it exactly (keys and shapes).
        strategy: the loss between the sampled x_0 and the ground truth.
        refine_steps: K, the Euler steps of the differentiable trajectory, on the configured ``grid`` (the schedule's
            own by default), as validation and test sample.
        checkpointing: recompute each step's activations in the backward pass (memory independent of K).
        grad_last_k: backpropagate through the last k steps only (None: the whole trajectory).
        lpips_weights: explicit path of the LPIPS trunk (torchvision checkpoint); default: ``$TORCH_HOME`` cache.
        clip_model: open_clip architecture of the clip strategy.
        clip_pretrained: open_clip pretrained tag (it sets the normalisation).
        clip_checkpoint: explicit path of the open_clip checkpoint; default: the Hugging Face hub cache.
        test_random_backbones: build the loss networks with random weights. For tests only.
        lr: AdamW's peak learning rate (a tenth of pretraining's: the weights are converged already).
        warmup_epochs: linear warm-up epochs (none by default), then cosine decay to ``min_lr``.
        sampler: the sampler of validation and test (by default the refined trajectory's).
        steps: grid points of validation and test sampling (by default K's default).
        net: the network F (None: the init_checkpoint's).
        schedule: the noise schedule (None: the init_checkpoint's).
        **kwargs: the remaining :class:`DiffusionColorizer` arguments (prediction, EMA, guidance, ...).
    """

    def __init__(
        self,
        init_checkpoint: str | None = None,
        strategy: Strategy = "mse",
        refine_steps: int = 50,
        checkpointing: bool = True,
        grad_last_k: int | None = None,
        lpips_weights: str | None = None,
        clip_model: str = "ViT-B-32",
        clip_pretrained: str = "openai",
        clip_checkpoint: str | None = None,
        test_random_backbones: bool = False,
        lr: float = 1e-5,
        warmup_epochs: float = 0.0,
        sampler: SamplerName = "euler",
        steps: int = 50,
        net: Network | None = None,
        schedule: NoiseSchedule | None = None,
        **kwargs,
    ):
        if strategy not in STRATEGIES:
            raise OptionError("strategy", f"must be one of {', '.join(STRATEGIES)}, got {strategy!r}")
        if refine_steps < 1:
            raise OptionError("refine_steps", f"must be >= 1, got {refine_steps}")
        if grad_last_k is not None and grad_last_k < 1:
            raise OptionError("grad_last_k", f"must be >= 1 or None (the whole trajectory), got {grad_last_k}")
        init = None
        if init_checkpoint is not None:
            # Classes the user's own config names are trusted too (a custom network trained with that config).
            trusted = {class_path(part) for part in (net, schedule) if part is not None}
            init = read_checkpoint(init_checkpoint, trusted=trusted)
            if net is None and schedule is None:
                net, schedule = build_parts(init)  # the pretrained model's, as they must be
        if getattr(schedule, "deterministic", False):
            raise UserError(f"{init_checkpoint or 'the configured model'} is the cold-diffusion baseline: trajectory "
                            "refinement runs Euler steps from pure noise, which a cold model never saw; finetune a "
                            "noise-schedule (phi, EDM, DDPM) checkpoint")
        super().__init__(net=net, schedule=schedule, lr=lr, warmup_epochs=warmup_epochs, sampler=sampler,
                         steps=steps, **kwargs)
        # The frozen loss network: a plain attribute, not a child module, so it is not saved, trained or moved by
        # Lightning (it follows the prediction's device in the loss).
        object.__setattr__(self, "loss_net", None)
        self.ema_step_offset = 0  # the pretraining steps, so that the EMA decay warm-up is not restarted
        if init is not None:
            self.load_init_weights(init)

    @classmethod
    def inference_args(cls, hparams: dict) -> dict:
        """Sampling a finetuned checkpoint needs neither the pretrained file nor the loss networks."""
        return {**hparams, "init_checkpoint": None}

    def load_init_weights(self, ckpt: Checkpoint) -> None:
        """The EMA weights of a pretraining checkpoint into the trained weights and the EMA (strict keys)."""
        path, theirs = ckpt.path, ckpt.hparams
        for key in ("schedule", "prediction", "sigma_data"):
            if key in theirs and theirs[key] != self.hparams[key]:
                raise UserError(f"{path} was trained with {key} {theirs[key]}, this model is configured with "
                                f"{self.hparams[key]}; configure the same {key} to finetune it")
        ema = {k[len("ema."):]: v for k, v in ckpt.data["state_dict"].items() if k.startswith("ema.")}
        if not ema:
            raise UserError(f"{path} holds no EMA weights (ema.* keys); pass a checkpoint written by pretrain.py")
        net = theirs.get("net", {}).get("init_args", "?")
        what = f"the configured network (the checkpoint's net: {net})"
        load_weights(self.denoiser, ema, path, what)
        load_weights(self.ema, ema, path, what)
        self.ema_step_offset = int(ckpt.data.get("global_step", 0))

    # -- the objective ---------------------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        if stage == "fit":
            self.build_loss_net()  # a missing backbone stops the run before the first (expensive) step

    def build_loss_net(self) -> nn.Module | None:
        hp = self.hparams
        if self.loss_net is None and hp.strategy != "mse":
            if hp.strategy == "clip":
                net = build_clip_image_encoder(hp.clip_model, hp.clip_pretrained, hp.clip_checkpoint,
                                               random_init_for_tests=hp.test_random_backbones)
            else:
                net = build_lpips(hp.strategy.split("-", 1)[1], hp.lpips_weights,
                                  random_init_for_tests=hp.test_random_backbones)
            object.__setattr__(self, "loss_net", net.requires_grad_(False).eval())
        return self.loss_net

    def trajectory_loss(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean over the batch of the strategy's distance between x_0 and the ground truth (both in [-1, 1])."""
        if self.hparams.strategy == "mse":
            per_image = (pred.float() - target.float()).square().mean(dim=(1, 2, 3))
        elif self.hparams.strategy == "clip":
            encoder = self.build_loss_net().to(pred.device)
            with torch.no_grad():
                goal = encoder(target)
            per_image = 1 - (encoder(pred) * goal).sum(dim=-1)
        else:
            per_image = self.build_loss_net().to(pred.device)(pred, target)
        return per_image.float().mean()

    def refine(self, batch: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        """x_0 of the K-step Euler trajectory from x_T = sigma_max * noise, differentiable in the trained weights."""
        y = batch["target"]
        sigmas = sampler_grid(self.schedule, self.hparams.refine_steps, self.hparams.grid, self.hparams.rho,
                              device=y.device)
        if generator is not None:
            noise = torch.randn(y.shape, generator=generator).to(y)
        else:  # the sample's own stream, as in pretraining
            noise = self.training_draws(batch)[1]
        cond = batch_cond(batch)
        return sample_euler_diff(self.denoiser, noise * sigmas[0], sigmas, cond,
                                 checkpointing=self.hparams.checkpointing, grad_last_k=self.hparams.grad_last_k)

    def refine_loss(self, batch: dict, generator: torch.Generator | None = None) -> torch.Tensor:
        return self.trajectory_loss(self.refine(batch, generator), batch["target"])

    def training_step(self, batch: dict, batch_idx: int) -> torch.Tensor:
        loss = self.refine_loss(batch)
        self.log("train/loss", loss, prog_bar=True, on_step=True, on_epoch=True, batch_size=batch["target"].shape[0])
        return loss

    def ema_step(self) -> int:
        return self.ema_step_offset + self.global_step

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        checkpoint["ema_step_offset"] = self.ema_step_offset

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        super().on_load_checkpoint(checkpoint)
        self.ema_step_offset = int(checkpoint.get("ema_step_offset", self.ema_step_offset))
