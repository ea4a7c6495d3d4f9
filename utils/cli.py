"""The LightningCLI shared by pretrain.py and finetune.py."""
from __future__ import annotations

import importlib
import os
import sys

import torch
from pytorch_lightning.cli import LightningCLI

from utils.errors import UserError


def _cpu_threads() -> None:
    """Use every core for intra-op parallelism on CPU runs (PyTorch may default to fewer in containers)."""
    if not torch.cuda.is_available() and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(os.cpu_count() or 1)


def run_cli(model_class_path: str) -> None:
    module, _, name = model_class_path.rpartition(".")
    model_class = getattr(importlib.import_module(module), name)
    from data.datamodule import ColorizationDataModule

    _cpu_threads()
    try:
        LightningCLI(
            model_class,
            ColorizationDataModule,
            save_config_kwargs={"overwrite": False},
        )
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None
