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


class ColorizationCLI(LightningCLI):
    def _parse_ckpt_path(self) -> None:
        """Keep the configuration the user gave. (LightningCLI would overwrite it with the hyperparameters stored
        in --ckpt_path, so `test --model.steps 50 --ckpt_path X` would silently sample with the training value.)
        Pass the training config (saved as config.yaml next to the logs) when testing or resuming; a mismatching
        architecture then fails at weight loading."""


def run_cli(model_class_path: str) -> None:
    module, _, name = model_class_path.rpartition(".")
    model_class = getattr(importlib.import_module(module), name)
    from data.datamodule import ColorizationDataModule

    _cpu_threads()
    try:
        ColorizationCLI(
            model_class,
            ColorizationDataModule,
            save_config_kwargs={"overwrite": False},
        )
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        raise SystemExit(err.exit_code) from None
    except RuntimeError as err:
        if "SaveConfigCallback" not in str(err):
            raise
        path = str(err).split(" expected ")[-1].split(" to NOT exist")[0]
        print(f"error: {path} already exists from an earlier run; pass another --trainer.default_root_dir "
              "(or logger save_dir) so that run is kept, or delete it", file=sys.stderr)
        raise SystemExit(2) from None
