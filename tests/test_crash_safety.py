"""Training runs survive crashes: kill -9 then resume equals an uninterrupted run, a crash while saving keeps the
previous checkpoint, a NaN loss stops the run before it reaches the weights, and DDP ranks stay in sync."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from conftest import tiny_colorizer
from data.datamodule import ColorizationDataModule
from data.stream import StreamSampler
from models import checkpoint
from training.checkpoint_io import AtomicCheckpointIO
from models.diffusion import DiffusionColorizer
from models.unet import UNet
from utils.errors import TrainingDiverged

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "tiny.yaml"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}

# Runs tests/tiny.yaml through the real CLI, saving last.ckpt after every step; argv: DIR STEPS [KILL_AT [CKPT]].
# With KILL_AT the process SIGKILLs itself when that step starts (its checkpoint of the step before is on disk).
RUN = """
import os, signal, sys
import pytorch_lightning as pl
from data.datamodule import ColorizationDataModule
from models import checkpoint
from training.checkpoint_io import AtomicCheckpointIO
from models.diffusion import DiffusionColorizer
from training.cli import ColorizationCLI
config, faces, out, steps, kill_at, ckpt = sys.argv[1:7]
class Kill(pl.Callback):
    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if trainer.global_step == int(kill_at):
            os.kill(os.getpid(), signal.SIGKILL)
args = ["fit", "--config", config, "--data.root", faces, "--trainer.max_steps", steps,
        "--trainer.default_root_dir", out + ("/resumed" if ckpt != "-" else "/run"),
        "--trainer.callbacks+=pytorch_lightning.callbacks.ModelCheckpoint", f"--trainer.callbacks.dirpath={out}/ckpt",
        "--trainer.callbacks.save_last=true", "--trainer.callbacks.every_n_train_steps=1",
        "--model.p_drop_sketch=0.3", "--model.p_drop_reference=0.3", "--model.ema_decay=0.5"]
if ckpt != "-":
    args += ["--ckpt_path", ckpt]
ColorizationCLI(DiffusionColorizer, ColorizationDataModule, args=args,
                trainer_defaults={"callbacks": [Kill()]} if int(kill_at) >= 0 else {})
"""


def run(faces: Path, out: Path, steps: int, kill_at: int = -1, ckpt: Path | None = None):
    return subprocess.run([sys.executable, "-c", RUN, str(TINY), str(faces), str(out), str(steps), str(kill_at),
                           str(ckpt) if ckpt else "-"], cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)


def test_kill_9_then_resume_equals_an_uninterrupted_run(faces, tmp_path):
    # 12 training images, batch 4: 3 steps an epoch, so the kill (at step 4) and the resume fall mid-epoch.
    whole = run(faces, tmp_path / "whole", 7)
    assert whole.returncode == 0, whole.stderr[-3000:]
    killed = run(faces, tmp_path / "parts", 7, kill_at=4)
    assert killed.returncode == -9, killed.stderr[-3000:]
    last = tmp_path / "parts" / "ckpt" / "last.ckpt"
    assert torch.load(last, weights_only=True)["global_step"] == 4
    resumed = run(faces, tmp_path / "parts", 7, ckpt=last)
    assert resumed.returncode == 0, resumed.stderr[-3000:]

    expected = torch.load(tmp_path / "whole" / "ckpt" / "last.ckpt", weights_only=True)
    got = torch.load(last, weights_only=True)
    assert got["global_step"] == expected["global_step"] == 7
    assert set(got["state_dict"]) == set(expected["state_dict"])
    assert any(k.startswith("ema.") for k in got["state_dict"])
    for key, value in expected["state_dict"].items():
        torch.testing.assert_close(got["state_dict"][key], value, rtol=0, atol=0, msg=key)
    for a, b in zip(got["optimizer_states"][0]["state"].values(), expected["optimizer_states"][0]["state"].values()):
        torch.testing.assert_close(a["exp_avg"], b["exp_avg"], rtol=0, atol=0)


def trainer(tmp_path: Path, steps: int, **kw) -> pl.Trainer:
    return pl.Trainer(max_steps=steps, accelerator="cpu", logger=False, enable_progress_bar=False,
                      enable_model_summary=False, limit_val_batches=0, default_root_dir=tmp_path, **kw)


def test_a_crash_while_saving_keeps_the_previous_checkpoint(faces, tmp_path, monkeypatch):
    model, path = tiny_colorizer(), tmp_path / "last.ckpt"
    t = trainer(tmp_path, 1, enable_checkpointing=False, plugins=[AtomicCheckpointIO()])
    t.fit(model, ColorizationDataModule(str(faces), size=16, batch_size=4, num_workers=0, val_count=4))
    t.save_checkpoint(path)
    before = path.read_bytes()
    real_save = torch.save

    def crash(obj, handle):  # half the bytes reach the disk, then the process "dies"
        assert Path(handle.name).parent == path.parent and Path(handle.name) != path  # beside it, not in place
        real_save(obj, handle)
        handle.truncate(handle.tell() // 2)
        raise OSError("simulated crash while writing")

    monkeypatch.setattr(checkpoint.torch, "save", crash)
    with torch.no_grad():
        next(model.parameters()).add_(1.0)
    with pytest.raises(OSError, match="simulated crash"):
        t.save_checkpoint(path)
    assert path.read_bytes() == before
    assert torch.load(path, weights_only=True)["global_step"] == 1
    assert sorted(p.name for p in tmp_path.iterdir() if "partial" in p.name) == []
    monkeypatch.undo()
    t.save_checkpoint(path)  # and a save that completes replaces it
    assert path.read_bytes() != before


def test_the_cli_trainer_saves_atomically(faces, tmp_path):
    from training.cli import ColorizationCLI

    cli = ColorizationCLI(DiffusionColorizer, ColorizationDataModule, run=False,
                          args=["--config", str(TINY), "--data.root", str(faces)])
    assert isinstance(cli.trainer.strategy.checkpoint_io, AtomicCheckpointIO)


class NaNAt(DiffusionColorizer):
    def __init__(self, bad_step: int, **kw):
        super().__init__(**kw)
        self.bad_step = bad_step

    def denoising_loss(self, batch):
        loss = super().denoising_loss(batch)
        if self.global_step != self.bad_step:
            return loss
        self.before_bad = {k: v.clone() for k, v in self.state_dict().items()}
        return loss * float("nan")


def test_nan_loss_stops_with_the_step_and_keeps_the_last_good_checkpoint(faces, tmp_path):
    model = NaNAt(2, net=UNet(base_channels=16, channel_mult=(1, 2), num_blocks=1, attn_heads=2), ema_decay=0.5)
    ckpts = tmp_path / "ckpt"
    t = trainer(tmp_path, 5, callbacks=[pl.callbacks.ModelCheckpoint(dirpath=ckpts, save_last=True,
                                                                     every_n_train_steps=1)])
    with pytest.raises(TrainingDiverged, match="loss is nan at step 2"):
        t.fit(model, ColorizationDataModule(str(faces), size=16, batch_size=4, num_workers=0, val_count=4))
    assert all(torch.isfinite(v).all() for v in model.state_dict().values())
    saved = torch.load(ckpts / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 2
    assert all(torch.isfinite(v).all() for v in saved["state_dict"].values() if v.is_floating_point())
    for key, value in saved["state_dict"].items():  # nothing moved after the last good step
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)


def test_a_nan_step_is_skipped_on_the_device_between_host_checks(faces, tmp_path):
    """The accelerator path: the host reads the divergence record only every few steps, so the NaN step itself
    must leave the weights and the EMA as they were (fused AdamW's found_inf and a zero EMA weight)."""
    model = NaNAt(1, net=UNet(base_channels=16, channel_mult=(1, 2), num_blocks=1, attn_heads=2), ema_decay=0.5)
    model.divergence_check_every = 100  # no periodic read before the end of training
    data = ColorizationDataModule(str(faces), size=16, batch_size=4, num_workers=0, val_count=4)
    with pytest.raises(TrainingDiverged, match="loss is nan at step 1"):  # read at the end of training
        trainer(tmp_path, 2, enable_checkpointing=False).fit(model, data)
    assert model.global_step == 2
    for key, value in model.before_bad.items():  # the NaN step moved nothing, EMA included
        torch.testing.assert_close(model.state_dict()[key], value, rtol=0, atol=0)


@pytest.mark.parametrize("precision", ["16-mixed", "bf16-mixed"])
def test_fused_adamw_clips_under_mixed_precision(faces, tmp_path, precision):
    """16-mixed (the paper's precision) and bf16-mixed with gradient clipping and the fused optimizer: Lightning
    refuses to clip the gradients of an optimizer that can unscale them itself, so the module clips them, after
    unscaling under 16-mixed's gradient scaler; the clipped norm is that of the true gradients."""
    from pytorch_lightning.plugins import MixedPrecision

    class Norms(DiffusionColorizer):
        norms: list = []

        def configure_gradient_clipping(self, optimizer, gradient_clip_val=None, gradient_clip_algorithm=None):
            super().configure_gradient_clipping(optimizer, gradient_clip_val, gradient_clip_algorithm)
            grads = [p.grad for p in self.denoiser.parameters() if p.grad is not None]
            self.norms.append(float(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))))

    model = Norms(net=UNet(base_channels=16, channel_mult=(1, 2), num_blocks=1, attn_heads=2))
    before = [p.detach().clone() for p in model.denoiser.parameters()]
    t = trainer(tmp_path, 3, enable_checkpointing=False, gradient_clip_val=1e-3,
                plugins=[MixedPrecision(precision, "cpu",
                                        scaler=torch.amp.GradScaler("cpu") if precision == "16-mixed" else None)])
    t.fit(model, ColorizationDataModule(str(faces), size=16, batch_size=4, num_workers=0, val_count=4))
    assert model.trainer.optimizers[0].defaults["fused"]
    assert len(model.norms) == 3 and all(abs(n - 1e-3) < 1e-5 for n in model.norms), model.norms
    assert any(not torch.equal(a, b) for a, b in zip(before, model.denoiser.parameters()))
    assert all(torch.isfinite(p).all() for p in model.denoiser.parameters())


def test_per_sample_seeds_stay_on_the_host():
    """The draws read the seeds as Python ints: on an accelerator a device copy would be a host sync per step."""
    batch = {"target": torch.zeros(2, 3, 4, 4), "seed": torch.tensor([5, 7])}
    moved = tiny_colorizer().transfer_batch_to_device(batch, torch.device("meta"), 0)
    assert moved["target"].device.type == "meta" and moved["seed"].device.type == "cpu"
    assert moved["seed"].tolist() == [5, 7]


def test_nan_loss_is_one_line_from_the_cli(faces, tmp_path):
    result = subprocess.run(
        [sys.executable, str(ROOT / "pretrain.py"), "fit", "--config", str(TINY), "--data.root", str(faces),
         "--model.lr", "1e20", "--model.warmup_epochs", "0", "--trainer.gradient_clip_val", "null",
         "--trainer.max_steps", "6", "--trainer.default_root_dir", str(tmp_path)],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert result.returncode == 3, result.stderr[-3000:]
    last = result.stderr.strip().splitlines()[-1]
    assert "Traceback" not in result.stderr and last.startswith("error: training stopped: the loss is") \
        and "at step" in last


def test_stream_sampler_partitions_the_stream_across_ranks():
    one = list(StreamSampler(10, 4, seed=0, start=lambda: 0))
    ranks = [list(StreamSampler(10, 2, seed=0, start=lambda: 0, rank=r, world_size=2)) for r in range(2)]
    # step t of a single process with batch 4 = the union of the two ranks' batches of 2 at step t
    for t in range(2):
        assert sorted(one[4 * t: 4 * t + 4]) == sorted(ranks[0][2 * t: 2 * t + 2] + ranks[1][2 * t: 2 * t + 2])
    resumed = list(StreamSampler(10, 4, seed=0, start=lambda: 1))
    assert resumed[:4] == list(StreamSampler(10, 4, seed=0, start=lambda: 0))[4:8]
    epoch = [index for index, _ in StreamSampler(12, 4, seed=0, start=lambda: 0)]
    assert sorted(epoch) == list(range(12))  # every image once per epoch


DDP = """
import sys, torch
import pytorch_lightning as pl
from data.datamodule import ColorizationDataModule
from models import checkpoint
from training.checkpoint_io import AtomicCheckpointIO
from models.diffusion import DiffusionColorizer
from models.unet import UNet
faces, out, devices, batch = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
pl.seed_everything(0)
model = DiffusionColorizer(net=UNet(base_channels=16, channel_mult=(1, 2), num_blocks=1, attn_heads=2),
                           p_drop_sketch=0.3, p_drop_reference=0.3, ema_decay=0.5, warmup_epochs=0)
trainer = pl.Trainer(max_steps=3, accelerator="cpu", devices=devices, strategy="ddp" if devices > 1 else "auto",
                     logger=False, enable_checkpointing=False, enable_progress_bar=False, enable_model_summary=False,
                     limit_val_batches=0, gradient_clip_val=1.0, default_root_dir=out)
trainer.fit(model, ColorizationDataModule(faces, size=16, batch_size=batch, num_workers=0, val_count=4))
torch.save(model.state_dict(), f"{out}/rank{trainer.global_rank}.pt")
"""


def test_ddp_ranks_stay_identical_and_equal_one_process_on_the_union_batch(faces, tmp_path):
    for devices, batch, out in ((2, 2, tmp_path / "ddp"), (1, 4, tmp_path / "single")):
        out.mkdir()
        script = tmp_path / "ddp_run.py"  # Lightning's DDP launcher re-runs the script file in each process
        script.write_text(DDP)
        result = subprocess.run([sys.executable, str(script), str(faces), str(out), str(devices), str(batch)],
                                cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
        assert result.returncode == 0, result.stderr[-3000:]
    rank0, rank1 = (torch.load(tmp_path / "ddp" / f"rank{r}.pt", weights_only=True) for r in (0, 1))
    single = torch.load(tmp_path / "single" / "rank0.pt", weights_only=True)
    start = tiny_colorizer().state_dict()
    assert any(not torch.equal(start[k], single[k]) for k in single)  # training moved the weights
    for key in single:
        torch.testing.assert_close(rank0[key], rank1[key], rtol=0, atol=0, msg=key)
        torch.testing.assert_close(rank0[key], single[key], rtol=1e-4, atol=1e-5, msg=key)
