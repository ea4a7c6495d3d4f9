"""Images per second of the real training loop: data loading, forward, backward, optimizer and EMA, as
``pretrain.py fit`` runs them (``bench/train_throughput.py`` times the step alone).

The device is synchronised only at the ends of each window of ``every_n_steps`` batches, so the figure is the true
rate and the loop gains no per-step host sync (Lightning's ``ThroughputMonitor`` synchronises after every batch).
The first ``warmup_steps`` batches (compilation, cuDNN autotuning, loader start-up) and validation runs are not
counted. Each window logs ``train/img_per_s`` (images of all processes); the end of training prints the rate over
every counted batch.

    trainer:
      callbacks:
        - class_path: training.throughput.Throughput
          init_args: {every_n_steps: 50, warmup_steps: 20}
"""
from __future__ import annotations

import time

import pytorch_lightning as pl
import torch
from pytorch_lightning.utilities import rank_zero_info


class Throughput(pl.Callback):
    def __init__(self, every_n_steps: int = 50, warmup_steps: int = 20):
        if every_n_steps < 1 or warmup_steps < 0:
            raise ValueError(f"every_n_steps must be at least 1 and warmup_steps at least 0, got {every_n_steps} "
                             f"and {warmup_steps}")
        self.every_n_steps, self.warmup_steps = every_n_steps, warmup_steps
        self.batches, self.start, self.images, self.paused = 0, None, 0, None
        self.total_seconds, self.total_images = 0.0, 0

    @staticmethod
    def _now(pl_module: pl.LightningModule) -> float:
        if pl_module.device.type == "cuda":
            torch.cuda.synchronize(pl_module.device)
        return time.perf_counter()

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.warmup_steps == 0:
            self.start = self._now(pl_module)

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs, batch, batch_idx):
        self.batches += 1
        if self.start is None:  # still warming up
            if self.batches == self.warmup_steps:
                self.start = self._now(pl_module)
            return
        self.images += batch["target"].shape[0] * trainer.world_size
        if (self.batches - self.warmup_steps) % self.every_n_steps == 0:
            now = self._now(pl_module)
            pl_module.log("train/img_per_s", self.images / (now - self.start), rank_zero_only=True)
            self.total_seconds += now - self.start
            self.total_images += self.images
            self.start, self.images = now, 0

    def on_validation_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.start is not None:
            self.paused = self._now(pl_module)

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.paused is not None:  # validation time is not training time
            self.start += self._now(pl_module) - self.paused
            self.paused = None

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.total_seconds:
            rank_zero_info(f"throughput: {self.total_images / self.total_seconds:.1f} img/s over "
                           f"{self.total_images} images ({trainer.world_size} process(es)) after "
                           f"{self.warmup_steps} warm-up batches")
