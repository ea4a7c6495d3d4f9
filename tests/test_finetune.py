"""Trajectory refinement: gradients through the sampler (checkpointed or not, truncated), the finetuning loop,
loading the pretrained EMA weights strictly, losses with frozen unsaved backbones, and the CLI config."""
import os
import subprocess
import sys
from pathlib import Path

import pytorch_lightning as pl
import pytest
import torch
import yaml

from models.checkpoint import load_colorizer
from models.diffusion import DiffusionColorizer
from models.denoiser import Cond, Denoiser
from models.refiner import TrajectoryRefiner
from models.solvers import sample_euler_diff
from models.schedules import EDMSchedule, PhiSchedule
from models.unet import UNet
from utils.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
SIZE, K = 16, 3


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_unet(**kw) -> UNet:
    return UNet(base_channels=16, channel_mult=(1, 2), num_blocks=1, attn_heads=2, **kw)


def perturb(module: torch.nn.Module, seed: int = 0, scale: float = 0.05) -> torch.nn.Module:
    """The U-Net's output layers start at zero; random offsets make every weight matter for the gradients."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(scale * torch.randn(p.shape, generator=g))
    return module


def fixed_batch(n: int = 2, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(n, 3, SIZE, SIZE, generator=g) * 2 - 1
    return {"target": target, "sketch": target.mean(1, keepdim=True).sign(), "reference": target.flip(-1)}


def trajectory_grads(den, checkpointing, grad_last_k=None, steps=K, x_requires_grad=False):
    b = fixed_batch()
    sigmas = PhiSchedule().grid(steps)
    x = (torch.randn(b["target"].shape, generator=torch.Generator().manual_seed(1)) * sigmas[0])
    x.requires_grad_(x_requires_grad)
    den.zero_grad()
    out = sample_euler_diff(den, x, sigmas, Cond(b["sketch"], b["reference"]), checkpointing=checkpointing,
                            grad_last_k=grad_last_k)
    (out - b["target"]).square().mean().backward()
    return [p.grad.clone() for p in den.parameters()], x.grad


def test_checkpointing_gives_the_same_gradients():
    den = perturb(Denoiser(tiny_unet(), PhiSchedule()))
    plain, _ = trajectory_grads(den, checkpointing=False)
    ckpt, _ = trajectory_grads(den, checkpointing=True)
    assert all(g.abs().sum() > 0 for g in plain)  # every weight takes part
    worst = max(float((a - b).norm() / b.norm()) for a, b in zip(ckpt, plain))
    assert worst < 1e-5, worst


@pytest.mark.parametrize("checkpointing", [False, True])
def test_truncated_backprop_touches_only_the_last_k_steps(checkpointing):
    base = perturb(Denoiser(tiny_unet(), PhiSchedule()))
    touched = []

    def den(x, sigma, cond):  # records the steps whose output the backward pass goes through
        out = base(x, sigma, cond)
        if out.requires_grad:
            out.register_hook(lambda g, s=float(sigma): touched.append(s))
        return out

    den.parameters, den.zero_grad = base.parameters, base.zero_grad
    sigmas = PhiSchedule().grid(K)
    truncated, x_grad = trajectory_grads(den, checkpointing, grad_last_k=1, x_requires_grad=True)
    assert touched == [float(sigmas[K - 1])] and x_grad is None  # the start is cut off from the graph

    # Same gradients as the last step alone, started from where the first K - 1 steps (without a graph) end.
    b = fixed_batch()
    x = torch.randn(b["target"].shape, generator=torch.Generator().manual_seed(1)) * sigmas[0]
    cond = Cond(b["sketch"], b["reference"])
    with torch.no_grad():
        x = sample_euler_diff(base, x, sigmas[:K - 1].tolist() + [sigmas[K - 1]], cond)
    base.zero_grad()
    (sample_euler_diff(base, x, sigmas[K - 1:], cond) - b["target"]).square().mean().backward()
    for a, ref in zip(truncated, (p.grad for p in base.parameters())):
        torch.testing.assert_close(a, ref)

    touched.clear()
    full, x_grad = trajectory_grads(den, checkpointing, grad_last_k=K, x_requires_grad=True)
    assert sorted(touched) == sorted(float(s) for s in sigmas[:K]) and x_grad is not None
    assert any(not torch.equal(a, c) for a, c in zip(truncated, full))


def refiner(**kw) -> TrajectoryRefiner:
    torch.manual_seed(0)
    kw = {"net": tiny_unet(), "refine_steps": K, "steps": K, **kw}
    return TrajectoryRefiner(**kw)


class Repeat(torch.utils.data.Dataset):
    def __init__(self, batch, times):
        self.batch, self.times = batch, times

    def __len__(self):
        return self.times

    def __getitem__(self, i):
        return self.batch


def test_a_few_finetune_steps_lower_the_loss_on_a_fixed_batch():
    model = refiner(lr=3e-3, ema_decay=0.9)
    perturb(model.denoiser)
    b = fixed_batch(4)

    def loss():
        with torch.no_grad():
            return float(model.refine_loss(b, generator=torch.Generator().manual_seed(5)))

    before = loss()
    trainer = pl.Trainer(accelerator="cpu", max_steps=12, logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=1.0,
                         limit_val_batches=0)
    trainer.fit(model, torch.utils.data.DataLoader(Repeat(b, 12), batch_size=None))
    after = loss()
    assert after < 0.8 * before, (before, after)
    # cosine without warm-up: the first step ran at the full rate, the schedule ends near min_lr
    sched = trainer.lr_scheduler_configs[0].scheduler
    assert sched.lr_lambdas[0](0) == pytest.approx(1.0) and sched.get_last_lr()[0] < 3e-3 * 0.05
    assert not torch.equal(model.ema.net.out[-1].weight, perturb(tiny_unet()).out[-1].weight)


def pretrained_checkpoint(tmp_path, global_step=1234, **kw) -> tuple[Path, DiffusionColorizer]:
    torch.manual_seed(1)
    source = DiffusionColorizer(net=tiny_unet(), **kw)
    perturb(source.denoiser, seed=2)
    perturb(source.ema, seed=3)  # EMA weights differ from the raw ones: the refiner must take these
    path = tmp_path / "pretrained.ckpt"
    torch.save({"state_dict": source.state_dict(), "hyper_parameters": dict(source.hparams),
                "global_step": global_step}, path)
    return path, source


def test_init_checkpoint_loads_ema_weights_into_model_and_ema(tmp_path):
    path, source = pretrained_checkpoint(tmp_path)
    model = refiner(init_checkpoint=str(path))
    for mine in (model.denoiser, model.ema):
        for (name, a), b in zip(mine.state_dict().items(), source.ema.state_dict().values()):
            assert torch.equal(a, b), name
    assert model.ema_step_offset == 1234


def test_init_checkpoint_mismatch_is_one_clear_line(tmp_path):
    path, _ = pretrained_checkpoint(tmp_path)
    with pytest.raises(UserError, match="do not match the configured network") as err:
        refiner(init_checkpoint=str(path), net=UNet(base_channels=16, channel_mult=(1, 2, 2), num_blocks=1,
                                                    attn_heads=2))
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="do not match"):  # same keys, other shapes
        refiner(init_checkpoint=str(path), net=UNet(base_channels=32, channel_mult=(1, 2), num_blocks=1,
                                                    attn_heads=2))
    with pytest.raises(UserError, match="schedule"):
        refiner(init_checkpoint=str(path), schedule=EDMSchedule())
    with pytest.raises(UserError, match="not found"):
        refiner(init_checkpoint=str(tmp_path / "missing.ckpt"))
    state = torch.load(path, weights_only=True)
    state["state_dict"] = {k: v for k, v in state["state_dict"].items() if not k.startswith("ema.")}
    torch.save(state, path)
    with pytest.raises(UserError, match="no EMA weights"):
        refiner(init_checkpoint=str(path))


def test_cold_checkpoint_is_refused_in_one_line(tmp_path):
    from models.cold import ColdSchedule

    path, _ = pretrained_checkpoint(tmp_path, schedule=ColdSchedule(), sampler="cold", prediction="x0")
    with pytest.raises(UserError, match="cold-diffusion baseline") as err:  # network and schedule from the file
        TrajectoryRefiner(init_checkpoint=str(path), refine_steps=K, steps=K)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("strategy", ["lpips-vgg", "clip"])
def test_perceptual_losses_train_the_denoiser_with_frozen_unsaved_backbones(strategy):
    model = refiner(strategy=strategy, test_random_backbones=True, refine_steps=2)
    perturb(model.denoiser)
    loss = model.refine_loss(fixed_batch(1), generator=torch.Generator().manual_seed(0))
    loss.backward()
    assert torch.isfinite(loss) and loss > 0
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.denoiser.parameters())
    assert all(not p.requires_grad and p.grad is None for p in model.loss_net.parameters())
    assert set(model.state_dict()) == set(DiffusionColorizer(net=tiny_unet()).state_dict())
    assert len(list(model.parameters())) == len(list(DiffusionColorizer(net=tiny_unet()).parameters()))


def test_missing_backbone_weights_stop_the_fit_in_one_line(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    with pytest.raises(UserError, match="vgg16-397923af.pth"):
        refiner(strategy="lpips-vgg").setup("fit")


def test_finetuned_checkpoint_reloads_for_sampling_without_the_pretrained_file(tmp_path):
    path, _ = pretrained_checkpoint(tmp_path)
    model = refiner(init_checkpoint=str(path), strategy="lpips-vgg", test_random_backbones=True)
    model.build_loss_net()
    finetuned = tmp_path / "finetuned.ckpt"
    ckpt = {"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams)}
    model.on_save_checkpoint(ckpt)  # as Lightning does: records the class
    torch.save(ckpt, finetuned)
    path.unlink()
    loaded = load_colorizer(finetuned)
    assert type(loaded) is TrajectoryRefiner and loaded.loss_net is None
    assert loaded.hparams.sampler == "euler" and loaded.hparams.steps == K
    for a, b in zip(loaded.state_dict().values(), model.state_dict().values()):
        assert torch.equal(a, b)


def test_config_parses():
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    out = subprocess.run(
        [sys.executable, "finetune.py", "fit", "--config", "configs/finetune.yaml", "--model.init_checkpoint", "X",
         "--data.root", "Y", "--print_config"], cwd=ROOT, capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    for line in ("init_checkpoint: X", "strategy: lpips-vgg", "refine_steps: 50", "checkpointing: true",
                 "warmup_epochs: 0", "max_epochs: 10", "precision: 16-mixed", "net: null", "schedule: null"):
        assert line in out.stdout, line


def test_finetune_demo_config_refines_the_demo_checkpoint():
    """configs/finetune_demo.yaml refines the `make demo` checkpoint and reads its network from it."""
    demo, finetune = (yaml.safe_load((ROOT / "configs" / name).read_text()) for name in ("demo.yaml",
                                                                                         "finetune_demo.yaml"))
    demo_checkpoints = next(c["init_args"]["dirpath"] for c in demo["trainer"]["callbacks"]
                            if c["class_path"].endswith("ModelCheckpoint"))
    assert finetune["model"]["init_checkpoint"] == demo_checkpoints + "/last.ckpt"
    assert "net" not in finetune["model"] and "schedule" not in finetune["model"]
    assert finetune["data"]["root"] == demo["data"]["root"]


def test_network_and_schedule_come_from_the_init_checkpoint(tmp_path):
    path, source = pretrained_checkpoint(tmp_path, schedule=PhiSchedule("sigma/(sigma+0.2)"))
    model = TrajectoryRefiner(init_checkpoint=str(path), refine_steps=K, steps=K)
    assert model.hparams.net == source.hparams.net and model.hparams.schedule == source.hparams.schedule
    assert model.schedule.phi.name == "sigma/(sigma+0.2)"
    for a, b in zip(model.ema.state_dict().values(), source.ema.state_dict().values()):
        assert torch.equal(a, b)
