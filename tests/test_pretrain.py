"""Pretraining: the loss goes down, EMA, checkpoints (resume, strict safe loading), DDP on CPU, the configs."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch

from conftest import tiny_colorizer
from data.synthetic import render_face
from models.checkpoint import load_colorizer
from models.diffusion import DiffusionColorizer
from models.denoiser import Cond
from utils.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "tests" / "tiny.yaml"
ENV = {**os.environ, "HF_HUB_OFFLINE": "1", "PYTHONPATH": str(ROOT)}


def fixed_batch(n=8, size=16):
    imgs = torch.stack([torch.from_numpy(render_face(100 + i, size)).permute(2, 0, 1).float() / 127.5 - 1
                        for i in range(n)])
    return {"target": imgs, "sketch": imgs.mean(1, keepdim=True), "reference": imgs.flip(-1)}


def seeded_loss(model, batch, seed=0):
    torch.manual_seed(seed)
    with torch.no_grad():
        return float(sum(model.denoising_loss(batch) for _ in range(4)) / 4)


def train_briefly(model, batch, steps=30) -> tuple[float, float]:
    """(loss before, loss after) ``steps`` Adam steps on one fixed batch."""
    opt = torch.optim.Adam(model.denoiser.parameters(), lr=2e-3)
    before = seeded_loss(model, batch)
    for _ in range(steps):
        opt.zero_grad()
        model.denoising_loss(batch).backward()
        opt.step()
    return before, seeded_loss(model, batch)


def test_training_steps_lower_the_loss():
    torch.manual_seed(0)
    before, after = train_briefly(tiny_colorizer(p_drop_sketch=0.0, p_drop_reference=0.0), fixed_batch())
    assert after < 0.7 * before


def test_compiled_network_matches_the_eager_loss_and_gradients():
    """compile=True compiles the network in place when the trainer sets the model up: the checkpoint keys stay,
    and the loss and its gradients match the eager network's (on a tiny model, on the CPU)."""
    torch.manual_seed(0)
    eager = tiny_colorizer(p_drop_sketch=0.0, p_drop_reference=0.0)
    fast = tiny_colorizer(p_drop_sketch=0.0, p_drop_reference=0.0, compile=True)
    fast.load_state_dict(eager.state_dict())
    fast.configure_model()
    assert fast.denoiser.net._compiled_call_impl is not None and eager.denoiser.net._compiled_call_impl is None
    assert list(fast.state_dict()) == list(eager.state_dict())
    batch = fixed_batch(n=4)
    grads = []
    for model in (eager, fast):
        torch.manual_seed(1)
        loss = model.denoising_loss(batch)
        loss.backward()
        grads.append((float(loss), torch.cat([p.grad.flatten() for p in model.denoiser.parameters()])))
    (a, ga), (b, gb) = grads
    assert abs(a - b) <= 1e-3 * abs(a)
    assert (ga - gb).norm() <= 1e-3 * ga.norm()


def test_edm_loss_weighting_is_one_over_c_out_squared():
    model = tiny_colorizer(loss_weighting="edm")
    sigma = torch.tensor([0.1, 1.0, 10.0])
    torch.testing.assert_close(model.denoiser.loss_weight(sigma), (sigma**2 + 0.25) / (sigma * 0.5) ** 2)


def test_ema_tracks_weights_and_is_what_sampling_uses(faces):
    model = tiny_colorizer(ema_decay=0.9)
    trainer = pl.Trainer(max_steps=5, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, limit_val_batches=0)
    from data.datamodule import ColorizationDataModule

    trainer.fit(model, ColorizationDataModule(str(faces), size=16, batch_size=4, num_workers=0, val_count=4))
    raw = dict(model.denoiser.named_parameters())
    ema = dict(model.ema.named_parameters())
    assert any(not torch.equal(raw[k], ema[k]) for k in raw)
    # sampling uses the EMA copy: corrupting the raw weights must not change the (seeded) output
    batch = fixed_batch(2)
    cond = Cond(batch["sketch"], batch["reference"])
    before = model.sample(cond, steps=3, seed=0)
    with torch.no_grad():
        for p in model.denoiser.parameters():
            p.add_(1.0)
    torch.testing.assert_close(model.sample(cond, steps=3, seed=0), before)
    assert not torch.allclose(model.sample(cond, steps=3, seed=0, use_ema=False), before)


def run_cli(*args, timeout=600, script="pretrain.py"):
    return subprocess.run([sys.executable, str(ROOT / script), *args], cwd=ROOT, env=ENV,
                          capture_output=True, text=True, timeout=timeout)


def test_fit_checkpoint_resume_and_safe_loading(faces, tmp_path):
    ckpts = tmp_path / "ckpt"
    common = ["--config", str(TINY), "--data.root", str(faces), "--trainer.default_root_dir", str(tmp_path),
              "--trainer.callbacks+=pytorch_lightning.callbacks.ModelCheckpoint",
              f"--trainer.callbacks.dirpath={ckpts}", "--trainer.callbacks.save_last=true",
              "--trainer.callbacks.monitor=val/psnr", "--trainer.callbacks.mode=max"]
    first = run_cli("fit", *common, "--trainer.max_steps", "2")
    assert first.returncode == 0, first.stderr[-3000:]
    saved = torch.load(ckpts / "last.ckpt", weights_only=True)
    assert saved["global_step"] == 2

    # Resume: a callback records the step and weights the trainer starts from.
    probe = tmp_path / "probe.pt"
    resumed = subprocess.run(
        [sys.executable, "-c", RESUME_PROBE, str(TINY), str(faces), str(ckpts / "last.ckpt"), str(probe)],
        cwd=ROOT, env=ENV, capture_output=True, text=True, timeout=600)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    start = torch.load(probe, weights_only=True)
    assert start["step"] == 2
    for key, value in saved["state_dict"].items():
        torch.testing.assert_close(start["state"][key], value, rtol=0, atol=0)
    assert start["end_step"] == 4

    model = load_colorizer(ckpts / "last.ckpt")
    assert isinstance(model, DiffusionColorizer) and not model.training
    assert model.hparams.net["init_args"]["base_channels"] == 16


RESUME_PROBE = """
import sys, torch
import pytorch_lightning as pl
from training.cli import ColorizationCLI
from models.diffusion import DiffusionColorizer
from data.datamodule import ColorizationDataModule
config, faces, ckpt, probe = sys.argv[1:]
class Probe(pl.Callback):
    def on_train_start(self, trainer, module):
        self.record = {"step": trainer.global_step,
                       "state": {k: v.clone() for k, v in module.state_dict().items()}}
    def on_train_end(self, trainer, module):
        self.record["end_step"] = trainer.global_step
        torch.save(self.record, probe)
ColorizationCLI(DiffusionColorizer, ColorizationDataModule, trainer_defaults={"callbacks": [Probe()]},
             args=["fit", "--config", config, "--data.root", faces, "--trainer.max_steps", "4", "--ckpt_path", ckpt,
                   "--trainer.default_root_dir", probe + ".run"])
"""


def test_load_rejects_mismatched_and_foreign_checkpoints(tmp_path):
    model = tiny_colorizer()
    ckpt = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    ckpt["hyper_parameters"]["net"] = {**ckpt["hyper_parameters"]["net"],
                                       "init_args": {**model.hparams.net["init_args"], "base_channels": 32}}
    torch.save(ckpt, tmp_path / "mismatch.ckpt")
    with pytest.raises(UserError, match="do not match"):
        load_colorizer(tmp_path / "mismatch.ckpt")
    torch.save({"weights": torch.zeros(1)}, tmp_path / "foreign.ckpt")
    with pytest.raises(UserError, match="not a checkpoint of this project"):
        load_colorizer(tmp_path / "foreign.ckpt")
    torch.save({"state_dict": {}, "hyper_parameters": {"evil": Path}}, tmp_path / "pickle.ckpt")
    with pytest.raises(UserError, match="not a loadable checkpoint"):
        load_colorizer(tmp_path / "pickle.ckpt")
    with pytest.raises(UserError, match="not found"):
        load_colorizer(tmp_path / "absent.ckpt")


def test_ddp_on_two_cpu_processes(faces, tmp_path):
    result = run_cli("fit", "--config", str(TINY), "--data.root", str(faces), "--trainer.devices", "2",
                     "--trainer.strategy", "ddp", "--trainer.max_steps", "2",
                     "--trainer.default_root_dir", str(tmp_path), "--trainer.enable_checkpointing", "false")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "max_steps=2" in result.stderr + result.stdout


@pytest.mark.parametrize("configs", [
    ["configs/pretrain.yaml"], ["configs/pretrain.yaml", "configs/baselines/edm.yaml"],
    ["configs/pretrain.yaml", "configs/baselines/ddpm.yaml"], ["configs/cpu64.yaml", "configs/demo.yaml"],
    ["configs/cpu64.yaml", "configs/baselines/edm.yaml"], ["configs/finetune.yaml"],
], ids=lambda c: "+".join(Path(p).stem for p in c))
def test_configs_parse(configs):
    # The documented command lines (docs/training.md, docs/experiments/) set the checkpoint folder with
    # --trainer.callbacks.init_args.dirpath, which reaches the last callback of a config's list: ModelCheckpoint must
    # be last
    args = ["fit"] + [a for c in configs for a in ("--config", c)] + [
        "--data.root", "somewhere", "--trainer.callbacks.init_args.dirpath", "/somewhere/ckpts", "--print_config"]
    script = "finetune.py" if configs == ["configs/finetune.yaml"] else "pretrain.py"
    result = run_cli(*args, timeout=120, script=script)
    assert result.returncode == 0, result.stderr[-2000:]
    checkpoint_options = result.stdout.split("class_path: pytorch_lightning.callbacks.ModelCheckpoint")[-1]
    assert "dirpath: /somewhere/ckpts" in checkpoint_options
    if script == "finetune.py":  # the network and schedule come from --model.init_checkpoint
        return
    assert "class_path: models.schedules." in result.stdout
    if configs[0] == "configs/pretrain.yaml":  # the published network's layout (docs/experiments/network-cost.md)
        assert "resample: pool" in result.stdout and "input_skip: false" in result.stdout
    if "edm" in "".join(configs):
        assert "EDMSchedule" in result.stdout
    if "ddpm" in "".join(configs):
        assert "VPSchedule" in result.stdout and "prediction: eps" in result.stdout


def test_existing_run_config_is_not_overwritten(faces, tmp_path):
    (tmp_path / "config.yaml").write_text("mine")
    result = run_cli("fit", "--config", str(TINY), "--data.root", str(faces), "--trainer.default_root_dir",
                     str(tmp_path), "--trainer.max_steps", "1", timeout=300)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "already" in result.stderr.strip().splitlines()[-1]
    assert (tmp_path / "config.yaml").read_text() == "mine"


def test_missing_data_folder_is_one_line(tmp_path):
    result = run_cli("fit", "--config", str(TINY), "--data.root", str(tmp_path / "nothing"), timeout=120)
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].startswith("error:") and "Traceback" not in result.stderr
