"""The LightningCLI shared by pretrain.py and finetune.py."""
from __future__ import annotations

import sys
from typing import Any

import torch
import torch.distributed as dist
from pytorch_lightning.cli import LightningCLI
from pytorch_lightning.plugins.io import TorchCheckpointIO

from data.datamodule import ColorizationDataModule
from models.checkpoint import read_checkpoint
from utils.cpu import use_all_cores
from utils.errors import OptionError, UserError

from .checkpoint_io import AtomicCheckpointIO
from .cli_parser import OneLineErrorParser


MODEL_DEFINING = ("net", "schedule", "prediction", "sigma_data")  # what the weights mean; sampling options may differ
#: Per model class: a configuration of the same stage that runs on a CPU.
CPU_CONFIGS = {"DiffusionColorizer": "configs/cpu64.yaml", "TrajectoryRefiner": "configs/finetune_demo.yaml"}
CPU_OPTIONS = "--trainer.accelerator cpu --trainer.devices 1 --trainer.precision 32-true"
#: Where a constructor's parameter sits in the configuration, searched in this order.
OPTION_GROUPS = ("model", "data", "model.net.init_args", "model.schedule.init_args")


def _plain(value: Any) -> Any:
    """A config value (jsonargparse Namespace, tuple) as plain dicts and lists, for comparison with a checkpoint."""
    if hasattr(value, "as_dict"):
        value = value.as_dict()
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def model_mismatches(model_config: Any, hparams: dict) -> list[str]:
    """The model-defining options on which the configured model and a checkpoint's hyperparameters disagree, as
    'name: config X, checkpoint Y' (options the config leaves unset, or the checkpoint lacks, are not compared)."""
    config, saved = _plain(model_config or {}), _plain(hparams)
    found = []
    for key in MODEL_DEFINING:
        mine, theirs = config.get(key), saved.get(key)
        if mine is None or theirs is None:
            continue
        if isinstance(mine, dict) and isinstance(theirs, dict):
            if mine.get("class_path") != theirs.get("class_path"):
                found.append(f"{key}: config {mine.get('class_path')}, checkpoint {theirs.get('class_path')}")
                continue
            args, saved_args = mine.get("init_args") or {}, theirs.get("init_args") or {}
            found += [f"{key}.{name}: config {args[name]!r}, checkpoint {saved_args[name]!r}"
                      for name in sorted(set(args) & set(saved_args)) if args[name] != saved_args[name]]
        elif mine != theirs:
            found.append(f"{key}: config {mine!r}, checkpoint {theirs!r}")
    return found


def gpu_shortage(trainer: Any, cpu_config: str) -> str | None:
    """Why the trainer options cannot run on this machine's GPUs (accelerator gpu / cuda without CUDA, or more
    devices than it has), with the way out; None when they can. Lightning would raise a 30-line traceback."""
    accelerator = trainer.get("accelerator")
    if not isinstance(accelerator, str) or accelerator.lower() not in ("gpu", "cuda"):
        return None
    if not torch.cuda.is_available():
        return (f"the configuration trains on a GPU (--trainer.accelerator {accelerator}) and this machine has none: "
                f"use --config {cpu_config}, or add {CPU_OPTIONS}")
    devices, available = trainer.get("devices"), torch.cuda.device_count()
    if isinstance(devices, str) and devices.isdigit():
        devices = int(devices)
    wanted = devices if isinstance(devices, int) and devices > 0 else None  # -1 and "auto": all there are
    if isinstance(devices, (list, tuple)):
        wanted = len(devices)
    if wanted is not None and wanted > available:
        return (f"the configuration asks for {wanted} GPUs (--trainer.devices) and this machine has {available}: "
                f"add --trainer.devices {available}")
    return None


def option_key(config: Any, option: str) -> str:
    """The configuration key of a constructor parameter: ``model.realism``, ``model.net.init_args.ref_warp``."""
    for group in OPTION_GROUPS:
        values = config.get(group)
        if values is not None and option in values:
            return f"{group}.{option}"
    return option


def rejected_option(err: BaseException | None) -> OptionError | None:
    """The :class:`OptionError` behind ``err``: itself, or the cause jsonargparse wrapped (a nested class's)."""
    seen = set()
    while err is not None and id(err) not in seen:
        if isinstance(err, OptionError):
            return err
        seen.add(id(err))
        err = err.__cause__ or err.__context__
    return None


class ColorizationCLI(LightningCLI):
    def _parse_ckpt_path(self) -> None:
        """Check --ckpt_path before anything is built, and keep the configuration the user gave.

        The checkpoint is read with ``weights_only=True`` and every class it names must be one of the project's
        (:mod:`models.checkpoint`) or one the user's own config names; nothing from the file is instantiated.
        (LightningCLI would overwrite the config with the hyperparameters stored in the checkpoint, so
        `test --model.steps 50 --ckpt_path X` would silently sample with the training value.) Pass the training
        config (saved as config.yaml next to the logs) when testing or resuming; a mismatching architecture then
        fails at weight loading, and a model-defining option (network, schedule, prediction, sigma_data) that
        differs from the checkpoint's is a one-line error: the same weights under another preconditioning or
        schedule load without complaint and sample noise."""
        subcommand = self.config.get("subcommand")
        config = self.config.get(subcommand) if subcommand else None
        ckpt_path = config.get("ckpt_path") if config is not None else None
        if ckpt_path and ckpt_path not in ("last", "best", "hpc", "registry"):
            model = config.get("model") or {}
            trusted = {(model.get(key) or {}).get("class_path") for key in ("net", "schedule")} - {None}
            ckpt = read_checkpoint(ckpt_path, trusted=trusted, mmap=True)  # the names only: tensors stay on disk
            found = model_mismatches(model, ckpt.hparams)
            if found:
                raise UserError(f"{ckpt_path}: the configured model differs from the checkpoint's ("
                                f"{'; '.join(found[:3])}{'; ...' if len(found) > 3 else ''}); pass the config it "
                                "was trained with (config.yaml next to its logs), or the same options")

    def before_instantiate_classes(self) -> None:
        """Refuse, before anything is built, a GPU configuration that this machine cannot run, and fit without data."""
        config = self._subcommand_config()
        problem = gpu_shortage(config.trainer, CPU_CONFIGS.get(self.model_class.__name__, "configs/cpu64.yaml"))
        if problem:
            raise UserError(problem)
        if self.subcommand == "fit" and config.data.get("root") is None:
            raise UserError("fit needs --data.root DIR, the folder of training images")

    def instantiate_classes(self) -> None:
        """The configured classes; a value a constructor rejects (:class:`OptionError`) is one line naming its
        option (``--model.realism: must be in [0, 1], got 2.0``)."""
        try:
            super().instantiate_classes()
        except Exception as err:
            rejected = rejected_option(err)
            if rejected is None:
                raise
            raise UserError(f"--{option_key(self._subcommand_config(), rejected.option)}: {rejected.message}") \
                from None

    def _subcommand_config(self):
        """The configuration of the subcommand run (``run=False``, as in a script: the whole configuration)."""
        return self.config[self.subcommand] if self.subcommand else self.config

    def instantiate_trainer(self, **kwargs):
        """The configured trainer, saving checkpoints atomically (:class:`training.checkpoint_io.AtomicCheckpointIO`)."""
        trainer = super().instantiate_trainer(**kwargs)
        if type(trainer.strategy.checkpoint_io) is TorchCheckpointIO:  # not a plugin the user chose
            trainer.strategy.checkpoint_io = AtomicCheckpointIO()
        return trainer

    def _prepare_subcommand_kwargs(self, subcommand: str) -> dict:
        """The trainer method's arguments; a checkpoint is always unpickled with ``weights_only=True``."""
        kwargs = super()._prepare_subcommand_kwargs(subcommand)
        if "weights_only" in self._subcommand_method_arguments[subcommand]:
            kwargs["weights_only"] = True
        return kwargs


def run_cli(model_class: type, args: list[str] | None = None, description: str | None = None) -> None:
    """Run the LightningCLI of ``model_class`` on ``args`` (default: the command line); a UserError is one line.
    ``description`` heads ``--help`` (the entry script's docstring)."""
    use_all_cores()
    parser_kwargs = {}
    if description:
        parser_kwargs = {name: {"description": description} for name in ("fit", "validate", "test", "predict")}
        parser_kwargs["description"] = description
    try:
        ColorizationCLI(
            model_class,
            ColorizationDataModule,
            save_config_kwargs={"overwrite": False},
            parser_class=OneLineErrorParser,
            auto_configure_optimizers=False,  # the model configures its own (AdamW, warm-up and cosine decay)
            parser_kwargs=parser_kwargs,
            args=args,
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
    finally:
        # Lightning leaves the DDP process group open; torn down by the interpreter's exit, gloo's worker threads
        # can abort the process ("terminate called without an active exception") after a run that succeeded.
        if dist.is_available() and dist.is_initialized():
            dist.destroy_process_group()
