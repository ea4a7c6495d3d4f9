"""The real-loop throughput callback: counts the images of the batches after the warm-up, leaves validation out,
refuses bad windows."""
import logging
import time

import pytest
import pytorch_lightning as pl

from conftest import tiny_colorizer
from data.datamodule import ColorizationDataModule
from training.throughput import Throughput


class SlowValidation(pl.Callback):
    def on_validation_start(self, trainer, pl_module):
        time.sleep(2.0)


def test_counts_the_images_after_warm_up_and_leaves_validation_out(faces, tmp_path, caplog, one_thread):
    meter = Throughput(every_n_steps=2, warmup_steps=1)
    trainer = pl.Trainer(max_steps=7, accelerator="cpu", logger=False, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False, num_sanity_val_steps=0,
                         limit_val_batches=1, val_check_interval=3, check_val_every_n_epoch=None,
                         default_root_dir=tmp_path, callbacks=[meter, SlowValidation()])
    start = time.perf_counter()
    with caplog.at_level(logging.INFO):
        trainer.fit(tiny_colorizer(), ColorizationDataModule(str(faces), size=16, batch_size=4, num_workers=0,
                                                             val_count=4))
    wall = time.perf_counter() - start
    # 7 batches of 4: 1 warm-up, then three windows of 2 batches
    assert meter.total_images == 6 * 4
    rate = float(trainer.callback_metrics["train/img_per_s"])
    assert rate > 0 and meter.total_seconds < wall - 3.5  # two validations of >= 2 s each are not training time
    assert "img/s over 24 images (1 process(es)) after 1 warm-up batches" in caplog.text


@pytest.mark.parametrize("kw", [dict(every_n_steps=0), dict(warmup_steps=-1)])
def test_bad_windows_are_refused(kw):
    with pytest.raises(ValueError, match="every_n_steps must be at least 1"):
        Throughput(**kw)
