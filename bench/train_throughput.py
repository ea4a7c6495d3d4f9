"""Training throughput of the paper-size U-Net: images per second of a full training step.

``python bench/train_throughput.py [--sizes 64 128] [--batch-size 8] [--iterations 5] [--warmup 1]
[--precisions fp32 mixed bf16] [--channels-last off on] [--layouts published adm] [--devices cpu cuda] [--num-workers 0]``

A step is what ``pretrain.py fit`` does per batch: the denoising loss of :class:`models.diffusion.DiffusionColorizer`
(the U-Net of ``configs/pretrain.yaml`` or its DDPM/ADM layout, and SSIMBaD's phi schedule), backward,
gradient clipping at 1.0, AdamW and the EMA update. Every combination of the options is one row of the table:

- data excluded: one real batch, already on the device, is reused for every step (compute only);
- data included: batches come from the real ``ColorizationDataModule`` (JPEG decode, resize, XDoG, TPS warp) on the
  shared anime faces, ``../shared/data/anime_faces_128/train`` relative to the project root (``--images`` to
  change), loading time counted. With ``--num-workers 0`` (default) loading runs in the training process, so the
  figure is compute + loading in series; with workers it overlaps with compute, which a short run cannot show (the
  workers prefetch 2 batches each during warm-up), so use many iterations then.
- precision "fp32" is plain float32; "mixed" is ``torch.autocast`` with bfloat16 on the CPU (like Lightning's
  bf16-mixed) and float16 with a gradient scaler on CUDA (like 16-mixed, the paper config); "bf16" is bfloat16
  autocast without a scaler on either (bf16-mixed);
- channels_last "on" converts the model and the inputs to ``torch.channels_last``;
- layout "published" is ``configs/pretrain.yaml``'s network, the published SSIMBaD network's resampling
  (``resample="pool", input_skip=False``: 54.0M parameters, FLOPs within 0.5 % of the published network's), "adm"
  the U-Net class's default (58.1M: strided-conv down, nearest + conv up, the input conv as a skip; 29 % more
  FLOPs); :data:`LAYOUTS`;
- ``--compile`` compiles the network in place (``nn.Module.compile``, as ``--model.compile true`` does in
  ``pretrain.py fit``); the warm-up steps then include the compilation.

Each row also gives the FLOPs of one training step per image (forward and backward, counted by
``torch.utils.flop_counter``), the achieved TFLOP/s (data excluded) and the MFU against the device's dense peak
(:data:`PEAK_TFLOPS`: fp16/bf16 tensor cores for mixed precision, TF32 for fp32, which cuDNN convolutions use by
default; "n/a" on a CPU or an unlisted GPU).

Times are wall-clock seconds after ``--warmup`` untimed steps (CUDA synchronised; the data-included figure reuses the
warmed-up model and warms up only loader workers); other jobs on the machine slow the
CPU figures down, so state the load when quoting them. CPUs without native bf16 convolutions (no AVX512-BF16 / AMX)
run "mixed" much slower than fp32.
"""
from __future__ import annotations

import argparse
import itertools
import os
import platform
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
import yaml  # noqa: E402

from data.datamodule import ColorizationDataModule  # noqa: E402
from models.diffusion import DiffusionColorizer  # noqa: E402
from models.ema import ema_update  # noqa: E402
from models.unet import UNet  # noqa: E402
from utils.errors import UserError, exit_on_user_error  # noqa: E402
from utils.report import text_table  # noqa: E402

DEFAULT_IMAGES = ROOT.parent / "shared" / "data" / "anime_faces_128" / "train"
IMAGE_KEYS = ("target", "sketch", "reference")

#: The network of configs/pretrain.yaml ("published") and the same widths in the U-Net class's default layout ("adm").
_PRETRAIN_NET = yaml.safe_load((ROOT / "configs" / "pretrain.yaml").read_text())["model"]["net"]["init_args"]
LAYOUTS = {"published": _PRETRAIN_NET, "adm": {**_PRETRAIN_NET, "resample": "conv", "input_skip": True}}

#: Dense peak TFLOP/s by GPU name (substring, first match) and precision (vendor data sheets, SXM parts).
PEAK_TFLOPS = {
    "H200": {"mixed": 989.0, "fp32": 494.7},
    "H100": {"mixed": 989.0, "fp32": 494.7},
    "A100": {"mixed": 312.0, "fp32": 156.0},
}


def peak_tflops(device: str, precision: str) -> float | None:
    """The dense peak of the current CUDA device for ``precision``, None on a CPU or an unlisted GPU."""
    if device != "cuda":
        return None
    name = torch.cuda.get_device_name()
    return next((peaks[precision] for key, peaks in PEAK_TFLOPS.items() if key in name), None)


@dataclass(frozen=True)
class Setting:
    device: str
    size: int
    precision: str  # "fp32" | "mixed" | "bf16"
    channels_last: bool
    compile: bool = False
    layout: str = "published"

    @property
    def mixed_dtype(self) -> torch.dtype:
        return torch.float16 if self.device == "cuda" and self.precision == "mixed" else torch.bfloat16

    @property
    def precision_label(self) -> str:
        if self.precision == "fp32":
            return "fp32"
        return "fp16-mixed" if self.mixed_dtype == torch.float16 else "bf16-mixed"


class Trainer:
    """The model, optimizer and one training step for a setting."""

    def __init__(self, setting: Setting, seed: int = 0):
        torch.manual_seed(seed)
        self.setting = setting
        self.device = torch.device(setting.device)
        self.model = DiffusionColorizer(net=UNet(**LAYOUTS[setting.layout])).to(self.device)
        if setting.channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        if setting.compile:
            self.model.denoiser.net.compile()
        self.params = list(self.model.denoiser.parameters())
        self.opt = torch.optim.AdamW(self.params, lr=1e-4, weight_decay=0.01)
        use_scaler = setting.mixed_dtype == torch.float16
        self.scaler = torch.amp.GradScaler("cuda") if use_scaler else None
        self.steps = 0

    def to_device(self, batch: dict) -> dict:
        fmt = torch.channels_last if self.setting.channels_last else torch.contiguous_format
        return {k: batch[k].to(self.device, non_blocking=True).contiguous(memory_format=fmt) for k in IMAGE_KEYS}

    def step(self, batch: dict) -> None:
        s = self.setting
        with torch.autocast(self.device.type, dtype=s.mixed_dtype, enabled=s.precision != "fp32"):
            loss = self.model.denoising_loss(batch)
        self.opt.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.opt)
            torch.nn.utils.clip_grad_norm_(self.params, 1.0)
            self.scaler.step(self.opt)
            self.scaler.update()
        else:
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.params, 1.0)
            self.opt.step()
        ema_update(self.model.ema, self.model.denoiser, 0.999, self.steps)
        self.steps += 1

    def flops_per_image(self, batch: dict) -> float:
        """FLOPs of the forward and backward pass of one step, per image (the optimizer and EMA are negligible)."""
        from torch.utils.flop_counter import FlopCounterMode

        s = self.setting
        counter = FlopCounterMode(display=False)
        with counter, torch.autocast(self.device.type, dtype=s.mixed_dtype, enabled=s.precision != "fp32"):
            self.model.denoising_loss(batch).backward()
        self.opt.zero_grad(set_to_none=True)
        return counter.get_total_flops() / batch["target"].shape[0]

    def sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)


def timed(trainer: Trainer, batches, warmup: int, iterations: int, batch_size: int) -> float:
    """Images per second over ``iterations`` steps after ``warmup`` untimed ones; ``batches`` yields host batches
    (each is moved to the device inside the timed region)."""
    source = iter(batches)
    for _ in range(warmup):
        trainer.step(trainer.to_device(next(source)))
    trainer.sync()
    start = time.perf_counter()
    for _ in range(iterations):
        trainer.step(trainer.to_device(next(source)))
    trainer.sync()
    return iterations * batch_size / (time.perf_counter() - start)


def loader(images: Path, size: int, batch_size: int, num_workers: int):
    datamodule = ColorizationDataModule(root=str(images), size=size, batch_size=batch_size,
                                        num_workers=num_workers, val_count=2, seed=0)
    return datamodule.train_dataloader()


def cycle(dataloader):
    while True:
        yield from dataloader


def run(setting: Setting, images: Path, batch_size: int, warmup: int, iterations: int,
        num_workers: int) -> tuple[float, float, float]:
    """(img/s with data excluded, img/s with data included, FLOPs per image) for one setting."""
    trainer = Trainer(setting)
    host_batch = next(iter(loader(images, setting.size, batch_size, 0)))
    device_batch = trainer.to_device(host_batch)
    excluded = timed(trainer, itertools.repeat(device_batch), warmup, iterations, batch_size)
    counter = Trainer(replace(setting, compile=False)) if setting.compile else trainer  # counted eagerly
    flops = counter.flops_per_image(device_batch)
    # The trainer is warm by now; only loader workers (started by the first batch) need a warm-up here.
    included = timed(trainer, cycle(loader(images, setting.size, batch_size, num_workers)),
                     warmup if num_workers > 0 else 0, iterations, batch_size)
    return excluded, included, flops


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description="Training img/s of the paper-size U-Net (see the module docstring).")
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 128], help="image sides (default 64 128)")
    parser.add_argument("--batch-size", type=int, default=8, help="images per step (default 8)")
    parser.add_argument("--iterations", type=int, default=5, help="timed steps per measurement (default 5)")
    parser.add_argument("--warmup", type=int, default=1, help="untimed steps before each measurement (default 1)")
    parser.add_argument("--precisions", nargs="+", choices=["fp32", "mixed", "bf16"], default=["fp32", "mixed"],
                        help="fp32, mixed (bf16 autocast on CPU, fp16 autocast + grad scaler on CUDA) and/or bf16 "
                             "(bf16 autocast on either)")
    parser.add_argument("--channels-last", nargs="+", choices=["off", "on"], default=["off", "on"],
                        help="memory format(s) to measure (default off on)")
    parser.add_argument("--devices", nargs="+", choices=["cpu", "cuda"],
                        help="devices (default: cpu, and cuda when available)")
    parser.add_argument("--images", type=Path, default=DEFAULT_IMAGES,
                        help="training images for the data-included figure (default: ../shared/data/anime_faces_128/"
                        "train next to the project)")
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader workers of the data-included figure "
                        "(default 0: loading in series with the step)")
    parser.add_argument("--layouts", nargs="+", choices=list(LAYOUTS), default=["published"],
                        help="U-Net layouts (default published: configs/pretrain.yaml's; adm: the class default)")
    parser.add_argument("--compile", action="store_true", help="compile the network (torch.compile, in place)")
    parser.add_argument("--threads", type=int, help="CPU intra-op threads (default: all cores)")
    return parser


def describe_cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if not args.images.is_dir():
        raise UserError(f"{args.images} not found; pass --images DIR with colour images (the shared real faces live "
                        "in ../shared/data/anime_faces_128 next to the project)")
    if min(args.iterations, args.batch_size) < 1 or args.warmup < 0 or args.num_workers < 0:
        raise UserError("--iterations and --batch-size must be at least 1, --warmup and --num-workers at least 0")
    devices = args.devices or (["cpu", "cuda"] if torch.cuda.is_available() else ["cpu"])
    if "cuda" in devices and not torch.cuda.is_available():
        raise UserError("--devices cuda: no CUDA device is available here")
    torch.set_num_threads(args.threads or os.cpu_count() or 1)
    params = ", ".join(f"{name} {sum(p.numel() for p in UNet(**LAYOUTS[name]).parameters()) / 1e6:.1f}M"
                       for name in args.layouts)
    print(f"U-Net parameters: {params}; batch {args.batch_size}, {args.warmup} warm-up + "
          f"{args.iterations} timed steps per figure, data-included with {args.num_workers} loader workers")
    print(f"torch {torch.__version__}; CPU: {describe_cpu()}, {torch.get_num_threads()} threads"
          + (f"; CUDA: {torch.cuda.get_device_name()}" if "cuda" in devices else ""), flush=True)
    rows = [["device", "layout", "size", "precision", "channels_last", "compile", "img/s (data excluded)",
             "img/s (data included)", "s/step (excluded)", "GFLOP/image", "TFLOP/s", "MFU"]]
    for device, layout, size, precision, cl in itertools.product(devices, args.layouts, args.sizes, args.precisions,
                                                                 args.channels_last):
        setting = Setting(device, size, precision, cl == "on", args.compile, layout)
        excluded, included, flops = run(setting, args.images, args.batch_size, args.warmup, args.iterations,
                                        args.num_workers)
        achieved = flops * excluded / 1e12
        peak = peak_tflops(device, "fp32" if precision == "fp32" else "mixed")
        rows.append([device, layout, str(size), setting.precision_label, cl, "on" if args.compile else "off",
                     f"{excluded:.2f}", f"{included:.2f}", f"{args.batch_size / excluded:.2f}", f"{flops / 1e9:.1f}",
                     f"{achieved:.3g}", "n/a" if peak is None else f"{achieved / peak:.1%}"])
        print(" | ".join(rows[-1]), flush=True)
    print()
    print(text_table(rows))


if __name__ == "__main__":
    main()
