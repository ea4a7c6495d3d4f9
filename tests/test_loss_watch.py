"""training.loss_watch.LossWatch in a real training loop, on scripted loss curves."""
from __future__ import annotations

import numpy as np
import pytest
import pytorch_lightning as pl
import torch

from training.loss_watch import LossWatch
from utils.errors import TrainingDiverged


class Scripted(pl.LightningModule):
    """Returns losses[step] (with a gradient, so the loop steps the optimizer)."""

    def __init__(self, losses):
        super().__init__()
        self.losses = losses
        self.w = torch.nn.Parameter(torch.zeros(()))

    def training_step(self, batch, batch_idx):
        return self.w * 0 + float(self.losses[self.global_step])

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)

    def train_dataloader(self):
        return torch.utils.data.DataLoader(torch.zeros(len(self.losses), 1), batch_size=1)


def fit(losses, **watch):
    trainer = pl.Trainer(max_steps=len(losses), callbacks=[LossWatch(**watch)], logger=False,
                         enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.fit(Scripted(losses))
    return trainer.global_step


def noisy(rng, levels):
    """A per-step loss around each level: the spread of a real diffusion loss (a few tenths of its mean)."""
    return np.concatenate([level * rng.uniform(0.5, 1.5, 10) for level in levels])


def test_a_falling_noisy_loss_and_a_short_spike_train_to_the_end():
    rng = np.random.default_rng(0)
    falling = noisy(rng, np.geomspace(1.0, 0.2, 30))
    assert fit(falling, window=10, ratio=2.5, patience=3) == len(falling)
    spike = noisy(rng, [0.3] * 10 + [1.0, 1.0] + [0.3] * 10)  # two windows up, then back: not a collapse
    assert fit(spike, window=10, ratio=2.5, patience=3) == len(spike)


def test_a_jump_that_stays_stops_the_run_with_one_line():
    rng = np.random.default_rng(1)
    collapse = noisy(rng, [1.0, 0.6, 0.4, 0.3, 0.27, 0.27] + [0.85] * 10)  # cpu64's concat run at lr 3e-3
    with pytest.raises(TrainingDiverged) as err:
        fit(collapse, window=10, ratio=2.5, patience=3)
    message = str(err.value)
    assert "training stopped at step 90" in message and "lower --model.lr" in message and "\n" not in message


def test_options_are_checked():
    for bad in ({"window": 0}, {"patience": 0}, {"ratio": 1.0}):
        with pytest.raises(ValueError, match="LossWatch needs"):
            LossWatch(**bad)
