"""Checkpoint I/O: a checkpoint is data, and only the project's own classes are built from it.

A checkpoint of this project holds tensors and plain data. The network, the noise schedule and the LightningModule
it describes are *names* (``hyper_parameters.net.class_path``, ``hyper_parameters.schedule.class_path``,
``model_class``) looked up in the registries below. Every name is checked against them right after the file is read
with ``torch.load(weights_only=True)``, before anything is imported or called; a name outside them is a
:class:`~utils.errors.UserError` naming the file and the refused name. A user's own class can be allowed only
explicitly, by the caller (``trusted``: ``colorize.py --trust-class``, or the class the user's own training config
names), never by the file. Constructor arguments must be parameters of the registered constructor, and the weights
must match the rebuilt model exactly (strict keys and shapes).
"""
from __future__ import annotations

import importlib
import inspect
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable

import torch
from torch import nn

from utils.errors import UserError

from .cold import ColdSchedule
from .schedules import EDMSchedule, PhiSchedule, VPSchedule
from .unet import UNet

#: The networks F a checkpoint may name.
NETWORKS: dict[str, type] = {"models.unet.UNet": UNet}
#: The noise schedules a checkpoint may name.
SCHEDULES: dict[str, type] = {f"models.schedules.{c.__name__}": c for c in (PhiSchedule, EDMSchedule, VPSchedule)}
SCHEDULES["models.cold.ColdSchedule"] = ColdSchedule
#: The LightningModules a checkpoint may name: (module, class) imported on use (they import this module).
MODULES: dict[str, tuple[str, str]] = {
    "models.diffusion.DiffusionColorizer": ("models.diffusion", "DiffusionColorizer"),
    "models.refiner.TrajectoryRefiner": ("models.refiner", "TrajectoryRefiner"),
    "models.colorizer.DiffusionColorizer": ("models.diffusion", "DiffusionColorizer"),  # its name until 2026-12
}
DEFAULT_MODULE = "models.diffusion.DiffusionColorizer"
_REGISTRIES = {"network": NETWORKS, "schedule": SCHEDULES, "model class": MODULES}


def class_path(obj_or_cls: Any) -> str:
    cls = obj_or_cls if isinstance(obj_or_cls, type) else type(obj_or_cls)
    return f"{cls.__module__}.{cls.__qualname__}"


def spec(obj: Any) -> dict:
    """{"class_path", "init_args"} of an object that records its init arguments (``obj.init_args``)."""
    return {"class_path": class_path(obj), "init_args": dict(obj.init_args)}


def _import(name: str) -> type:
    module, _, attr = name.rpartition(".")
    return getattr(importlib.import_module(module), attr)


def _named(value: Any, what: str, path: Path, trusted: frozenset[str]) -> str:
    """The class name ``value`` when the registry of ``what`` or ``trusted`` holds it; a UserError otherwise."""
    registry = _REGISTRIES[what]
    if isinstance(value, str) and (value in registry or value in trusted):
        return value
    allowed = ", ".join(registry)
    raise UserError(f"{path}: refused {what} {value!r}: a checkpoint may only name the project's own classes "
                    f"({allowed}); if this is your own trusted class, allow it explicitly (colorize.py --trust-class)")


def _resolve(name: str, what: str) -> type:
    entry = _REGISTRIES[what].get(name)
    if entry is None:  # a trusted name, allowed by the caller
        try:
            return _import(name)
        except (ImportError, AttributeError, ValueError) as err:
            raise UserError(f"cannot import the trusted {what} {name!r} ({err}); is its package on PYTHONPATH?") \
                from None
    return _import(".".join(entry)) if isinstance(entry, tuple) else entry


def _parameters(cls: type) -> set[str] | None:
    """Keyword parameters of ``cls`` (following ``**kwargs`` up the MRO); None when anything goes."""
    names: set[str] = set()
    for klass in cls.__mro__:
        if "__init__" not in vars(klass):
            continue
        params = inspect.signature(vars(klass)["__init__"]).parameters.values()
        names |= {p.name for p in params if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)} - {"self"}
        if not any(p.kind == p.VAR_KEYWORD for p in params):
            return names
    return None


def _construct(cls: type, kwargs: Any, what: str, path: Path) -> Any:
    if not isinstance(kwargs, dict):
        raise UserError(f"{path}: the {what}'s arguments are {type(kwargs).__name__}, not a dict of options")
    allowed = _parameters(cls)
    unknown = sorted(set(kwargs) - allowed) if allowed is not None else []
    if unknown:
        raise UserError(f"{path}: {class_path(cls)} takes no argument(s) {', '.join(map(repr, unknown))}; "
                        "the checkpoint was not written by this project (or by an incompatible version)")
    try:
        return cls(**kwargs)
    except (TypeError, ValueError, UserError) as err:
        raise UserError(f"{path}: cannot build {class_path(cls)} from its saved arguments ({err})") from None


@dataclass
class Checkpoint:
    """A checkpoint read and checked: its dict and the class names it uses (all allowed)."""

    path: Path
    data: dict
    net: str
    schedule: str
    model_class: str

    @property
    def hparams(self) -> dict:
        return {k: v for k, v in self.data["hyper_parameters"].items() if not k.startswith("_")}

    @property
    def datamodule_hparams(self) -> dict:
        """``datamodule_hyper_parameters`` (LightningCLI stores the data options there), or {}."""
        hp = self.data.get("datamodule_hyper_parameters")
        return dict(hp) if isinstance(hp, dict) else {}


def read_checkpoint(path: str | Path, map_location: str | torch.device = "cpu",
                    trusted: Iterable[str] = (), mmap: bool = False) -> Checkpoint:
    """Read a checkpoint of this project with ``weights_only=True`` and check every class name it holds
    (``mmap``: map the tensors instead of reading them, for a check before Lightning reads the file itself)."""
    path, trusted = Path(path), frozenset(trusted)
    if not path.is_file():
        raise UserError(f"checkpoint {path} not found; pass the .ckpt written by pretrain.py or finetune.py")
    try:
        data = torch.load(path, map_location=map_location, weights_only=True, mmap=mmap)
    except Exception as err:  # unpickling refused or a corrupt file: both are the user's file, not our bug
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise UserError(f"{path}: not a loadable checkpoint ({first})") from None
    if not isinstance(data, dict) or not isinstance(data.get("state_dict"), dict) \
            or not isinstance(data.get("hyper_parameters"), dict):
        raise UserError(f"{path}: not a checkpoint of this project (no state_dict / hyper_parameters)")
    hp = data["hyper_parameters"]
    names = {}
    for key in ("net", "schedule"):
        entry = hp.get(key)
        if not isinstance(entry, dict):
            raise UserError(f"{path}: not a checkpoint of this project (hyper_parameters.{key} is not a class spec)")
        names[key] = _named(entry.get("class_path"), "network" if key == "net" else "schedule", path, trusted)
    model_class = _named(data.get("model_class", DEFAULT_MODULE), "model class", path, trusted)
    return Checkpoint(path, data, names["net"], names["schedule"], model_class)


def load_weights(module: nn.Module, state_dict: dict, path: str | Path, what: str = "the model it describes") -> None:
    """``module.load_state_dict`` with strict keys and shapes; a mismatch is one :class:`UserError` line."""
    try:
        missing, unexpected = module.load_state_dict(state_dict, strict=False)
    except RuntimeError as err:  # same keys, different shapes
        detail = " ".join(str(err).split())
        raise UserError(f"{path}: weights do not match {what} ({detail[:300]})") from None
    if missing or unexpected:
        raise UserError(f"{path}: weights do not match {what} (missing {len(missing)} keys, e.g. "
                        f"{missing[:2]}; unexpected {len(unexpected)}, e.g. {unexpected[:2]})")


def build_parts(ckpt: Checkpoint) -> tuple[nn.Module, Any]:
    """The (network, schedule) a checked checkpoint describes, without weights."""
    hp = ckpt.hparams
    net = _construct(_resolve(ckpt.net, "network"), hp["net"].get("init_args", {}), "network", ckpt.path)
    schedule = _construct(_resolve(ckpt.schedule, "schedule"), hp["schedule"].get("init_args", {}), "schedule",
                          ckpt.path)
    return net, schedule


def build_model(ckpt: Checkpoint):
    """The LightningModule a checked checkpoint describes, with its weights (strict), in eval mode."""
    net, schedule = build_parts(ckpt)
    hp = {k: v for k, v in ckpt.hparams.items() if k not in ("net", "schedule")}
    cls = _resolve(ckpt.model_class, "model class")
    model = _construct(cls, {"net": net, "schedule": schedule, **cls.inference_args(hp)}, "model", ckpt.path)
    load_weights(model, ckpt.data["state_dict"], ckpt.path)
    return model.eval()


def load_colorizer(path: str | Path, map_location: str | torch.device = "cpu", trusted: Iterable[str] = ()):
    """Rebuild a model from a checkpoint (``weights_only=True``, allowed classes only, strict keys)."""
    return build_model(read_checkpoint(path, map_location, trusted))
