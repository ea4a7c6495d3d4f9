"""Stopping on a NaN / inf without a host sync per step: the LightningModule hooks of
:class:`models.diffusion.DiffusionColorizer` that watch the loss and the gradients. The check runs on the device:
each step records the first step whose loss (or, without a gradient scaler, whose gradients) are not finite, and
fused AdamW skips that update on the device (``found_inf``, GradScaler's own mechanism; under 16-mixed the scaler
sets it from the same gradients). The host reads the record every ``divergence_check_every`` steps, before any
checkpoint is written and at the end of training, then stops.
"""
from __future__ import annotations

import torch

from utils.errors import TrainingDiverged


class NonFiniteGuard:
    """A LightningModule mixin: records the first non-finite loss or gradient norm on the device, skips that update
    (``found_inf`` of a fused optimizer; the EMA step reads ``_step_nonfinite``) and stops training with one line
    (:class:`utils.errors.TrainingDiverged`). The gradients watched are those of the module's ``denoiser``."""

    #: Steps between host reads of the divergence record (a read is a device-to-host sync). None: every step on the
    #: CPU, where a read costs nothing, and every ``trainer.log_every_n_steps`` on an accelerator.
    divergence_check_every: int | None = None
    _step_nonfinite: torch.Tensor | None = None

    def _record_nonfinite(self, value: torch.Tensor, kind: int) -> torch.Tensor:
        """Keep (step, value, kind) of the first non-finite ``value`` (kind 0: the loss, 1: a gradient norm) in a
        device tensor; returns the 0-d "not finite" flag."""
        bad = ~torch.isfinite(value.detach().float())
        record = getattr(self, "_divergence", None)
        if record is None or record.device != value.device:
            record = torch.tensor([-1.0, 0.0, 0.0], device=value.device)
        entry = torch.stack([torch.full_like(bad, self.global_step, dtype=torch.float32),
                             value.detach().float(), torch.full_like(bad, kind, dtype=torch.float32)])
        self._divergence = torch.where(bad & (record[0] < 0), entry, record)
        return bad

    def _check_divergence(self) -> None:
        """Stop (on every rank alike) if any rank recorded a non-finite loss or gradient."""
        record = getattr(self, "_divergence", None)
        step, value, kind = record.tolist() if record is not None else (-1.0, 0.0, 0.0)
        if not self.trainer.strategy.reduce_boolean_decision(step >= 0, all=False):
            return
        what = f"the loss is {value}" if kind == 0 else f"a gradient is not finite (norm {value})"
        where = f"at step {int(step)}" if step >= 0 else "on another process"
        raise TrainingDiverged(
            f"training stopped: {what} {where} (epoch {self.current_epoch}); "
            "the weights and the EMA were not updated with it and the checkpoints on disk are from earlier steps. "
            "Resume from last.ckpt with a lower --model.lr, or check the training images")

    def on_before_backward(self, loss: torch.Tensor) -> None:
        self._loss_nonfinite = self._record_nonfinite(loss, 0)

    def on_before_optimizer_step(self, optimizer) -> None:
        """Skip this update on the device if the loss or any gradient is not finite (see above)."""
        scaler = getattr(self.trainer.precision_plugin, "scaler", None)
        bad = getattr(self, "_loss_nonfinite", None)
        if scaler is None:  # with a scaler, non-finite fp16 gradients are routine: the scaler skips those steps
            grads = [p.grad for p in self.denoiser.parameters() if p.grad is not None]
            norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)).float())
            bad = self._record_nonfinite(norm, 1) | bad
            if optimizer.defaults.get("fused"):
                optimizer.found_inf = bad.float()
        self._step_nonfinite = bad
        if self._check_every() == 1 or not optimizer.defaults.get("fused"):
            self._check_divergence()  # the read is free (CPU) or the optimizer cannot skip: stop before the step

    def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None) -> None:
        """Lightning's clipping, except for a fused optimizer under mixed precision, whose gradients Lightning
        refuses to clip (16-mixed and bf16-mixed alike): they are clipped here, after GradScaler's unscale_ when
        there is a scaler (its documented unscale_ -> clip -> step)."""
        if gradient_clip_val and getattr(optimizer, "_step_supports_amp_scaling", False):
            scaler = getattr(self.trainer.precision_plugin, "scaler", None)
            if scaler is not None:
                scaler.unscale_(optimizer)
            params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
            if gradient_clip_algorithm == "value":
                torch.nn.utils.clip_grad_value_(params, gradient_clip_val)
            else:
                torch.nn.utils.clip_grad_norm_(params, gradient_clip_val)
            return
        self.clip_gradients(optimizer, gradient_clip_val, gradient_clip_algorithm)

    def _check_every(self) -> int:
        every = self.divergence_check_every or (1 if self.device.type == "cpu" else self.trainer.log_every_n_steps)
        return max(1, every)

    def on_train_batch_end(self, outputs, batch, batch_idx: int) -> None:
        if self._check_every() > 1 and self.global_step % self._check_every() == 0:
            self._check_divergence()

    def on_train_end(self) -> None:
        self._check_divergence()
