"""pytest plugin: a tiny trained checkpoint, built once per test session by running ``pretrain.py fit`` on a tiny
procedural dataset (what a user does, at 16 px and 2 steps). Test modules load it with
``pytest_plugins = ["conftest_ckpt"]``; every module then shares the one session-scoped fixture.

The learning rate is large and the EMA decay 0 so that two steps move the (zero-initialised) output layer far enough
for the sketch and the reference to change the sampled pixels.
"""
from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SIZE = 16
COUNT = 24

CONFIG = """\
seed_everything: 0
trainer:
  accelerator: cpu
  devices: 1
  precision: 32-true
  max_steps: 2
  limit_val_batches: 1
  num_sanity_val_steps: 0
  logger: false
  enable_progress_bar: false
  enable_model_summary: false
  default_root_dir: {run}
  callbacks:
    - class_path: pytorch_lightning.callbacks.ModelCheckpoint
      init_args: {{dirpath: {checkpoints}, save_last: true}}
model:
  net:
    class_path: models.unet.UNet
    init_args: {{base_channels: 16, channel_mult: [1, 2], num_blocks: 1, attn_heads: 2}}
  lr: 0.01
  warmup_epochs: 0
  ema_decay: 0.0
  steps: 3
data:
  root: {data}
  size: {size}
  batch_size: 4
  num_workers: 0
  val_count: 4
"""


@dataclass(frozen=True)
class TinyModel:
    checkpoint: Path  # last.ckpt of the tiny run
    faces: Path  # the COUNT procedural colour faces (SIZE x SIZE) it was trained on
    size: int


def env() -> dict[str, str]:
    """Environment of the subprocesses: offline, one intra-op thread (these models are tiny; on a busy 2-core machine
    a second thread makes them 10x slower)."""
    return dict(os.environ, HF_HUB_OFFLINE="1", OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))


def run_python(*args: str | Path, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *map(str, args)], cwd=ROOT, env=env(), capture_output=True, text=True,
                          timeout=timeout)


def _check(result: subprocess.CompletedProcess, what: str) -> None:
    if result.returncode != 0:
        pytest.fail(f"{what} failed (exit {result.returncode}):\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}")


@pytest.fixture(scope="session")
def tiny_model(tmp_path_factory) -> TinyModel:
    base = tmp_path_factory.mktemp("tiny_model")
    faces, checkpoints = base / "faces", base / "checkpoints"
    _check(run_python("-m", "data.synthetic", "--out", faces, "--count", COUNT, "--size", SIZE), "data.synthetic")
    config = base / "tiny.yaml"
    config.write_text(CONFIG.format(run=base / "run", checkpoints=checkpoints, data=faces, size=SIZE))
    _check(run_python(ROOT / "pretrain.py", "fit", "--config", config), "pretrain.py fit")
    checkpoint = checkpoints / "last.ckpt"
    assert checkpoint.is_file(), sorted(p.name for p in checkpoints.iterdir())
    return TinyModel(checkpoint, faces, SIZE)


@pytest.fixture(scope="session")
def tiny_warp_model(tiny_model, tmp_path_factory) -> TinyModel:
    """The tiny run's checkpoint with a correspondence-warp network of the same widths (takes several references),
    its weights drawn at random with every path non-zero: a checkpoint as pretrain.py writes it, made in-process."""
    from models.checkpoint import spec
    from models.diffusion import DiffusionColorizer
    from models.unet import UNet

    torch.manual_seed(0)
    net = UNet(base_channels=16, channel_mult=(1, 2), num_blocks=1, attn_heads=2, ref_warp=1)
    model = DiffusionColorizer(net=net, steps=3, ema_decay=0.0)
    with torch.no_grad():
        for p in model.denoiser.parameters():
            if p.dim() > 1:  # weights, not biases or norms
                p.normal_(0, 0.05)
        model.ema.load_state_dict(model.denoiser.state_dict())
    ckpt = torch.load(tiny_model.checkpoint, weights_only=True)
    ckpt["state_dict"] = model.state_dict()
    ckpt["hyper_parameters"]["net"] = spec(net)
    ckpt.pop("optimizer_states", None)
    path = tmp_path_factory.mktemp("tiny_warp_model") / "warp.ckpt"
    torch.save(ckpt, path)
    return TinyModel(path, tiny_model.faces, tiny_model.size)


@pytest.fixture
def python_subprocess():
    """:func:`run_python`: run ``python ARGS`` in the project root as a user would, offline, one thread."""
    return run_python


@pytest.fixture
def one_thread(monkeypatch):
    """In-process runs of the CLIs on one intra-op thread (they keep it: OMP_NUM_THREADS is set), restored after."""
    threads = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
