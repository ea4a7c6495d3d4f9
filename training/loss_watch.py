"""Stop a run whose training loss has jumped and stayed up: a collapse that is not a NaN.

Averaged over a window of steps, a diffusion loss falls as training goes on, and the window means are steady (the
noise levels are drawn afresh every step). A run whose learning rate is too high can instead jump to several times
its best loss and stay there: cpu64's plain model at lr 3e-3 over a 3000-step schedule went from 0.27 to 0.8-0.9
around step 700, in both seeds, and never came back (validation PSNR 11 dB at step 1000). The module's divergence
guard stops only non-finite losses; this callback stops such a run with one line (exit status 3) when the mean loss
of ``window`` steps stays above ``ratio`` times the best window mean so far for ``patience`` windows in a row. The
loss is read on the host once a window (one sync), averaged over all processes, so every rank decides alike.

    trainer:
      callbacks:
        - class_path: training.loss_watch.LossWatch
          init_args: {window: 50, ratio: 2.5, patience: 3}
"""
from __future__ import annotations

import math

import pytorch_lightning as pl
import torch

from utils.errors import TrainingDiverged


class LossWatch(pl.Callback):
    def __init__(self, window: int = 50, ratio: float = 2.5, patience: int = 3):
        if window < 1 or patience < 1 or not ratio > 1:
            raise ValueError(f"LossWatch needs window >= 1, patience >= 1 and ratio > 1, got {window}, {patience}, "
                             f"{ratio}")
        self.window, self.ratio, self.patience = window, ratio, patience
        self._sum: torch.Tensor | None = None
        self._count, self._bad, self._best, self._best_step = 0, 0, math.inf, -1

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx):
        loss = outputs.get("loss") if isinstance(outputs, dict) else outputs
        if loss is None:
            return
        loss = loss.detach().float()
        self._sum = loss if self._sum is None else self._sum + loss  # on the device: no sync
        self._count += 1
        if self._count < self.window:
            return
        mean = float(trainer.strategy.reduce(self._sum / self._count, reduce_op="mean"))
        self._sum, self._count = None, 0
        if not math.isfinite(mean):
            return  # the module's divergence guard stops non-finite losses, with the step
        if mean < self._best:
            self._best, self._best_step, self._bad = mean, trainer.global_step, 0
            return
        self._bad = self._bad + 1 if mean > self.ratio * self._best else 0
        if self._bad >= self.patience:
            raise TrainingDiverged(
                f"training stopped at step {trainer.global_step}: the mean training loss of the last {self.window} "
                f"steps is {mean:.3g}, {mean / self._best:.1f} times its best ({self._best:.3g}, in the window to step "
                f"{self._best_step}), for {self.patience} windows in a row: the run has collapsed. Checkpoints "
                "written before the jump are good (the best one by validation score is kept); start again from one "
                "of them, or from scratch, with a lower --model.lr")
