"""Peak memory and time of one trajectory-refinement step against the number of sampler steps K.

For every K in --steps and checkpointing on/off, a fresh process builds the paper-size U-Net (or --net-config), runs
two pretraining steps (denoising loss, AdamW) to reach the fixed base (process, weights, gradients, optimizer state,
one step's activations), then --repeats finetuning steps with K differentiable Euler steps (mse strategy; the loss is
not what is measured). Memory is the process's peak RSS (getrusage; CPU) and, on a GPU, the peak CUDA allocation;
the growth column is the finetuning peak minus the pretraining peak of the same process. On the CPU the worker sets
up the heap as finetune.py does (``--malloc default`` keeps glibc's default, whose fragmentation grows with K).

    python bench/finetune_memory.py                      # K in 5 10 25 50, 64 px, batch 1, CPU
    python bench/finetune_memory.py --device cuda --size 256 --json runs/finetune_memory.json
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PAPER_NET = dict(base_channels=64, channel_mult=(1, 2, 4, 8), num_blocks=2, mid_attention=True, attn_heads=4)


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def worker(args: argparse.Namespace) -> dict:
    """One configuration in this (fresh) process; returns its measurements."""
    import torch

    device = torch.device(args.device)
    if args.threads:
        torch.set_num_threads(args.threads)
    sys.path.insert(0, str(ROOT))
    from utils.cpu import limit_heap_fragmentation

    heap = args.malloc == "finetune" and device.type == "cpu" and limit_heap_fragmentation()
    from models.refiner import TrajectoryRefiner
    from models.unet import UNet

    torch.manual_seed(0)
    cuda = device.type == "cuda"
    net = UNet(**json.loads(args.net_config)) if args.net_config else UNet(**PAPER_NET)
    model = TrajectoryRefiner(net=net, refine_steps=args.k, checkpointing=args.checkpointing, strategy="mse").to(device)
    opt = torch.optim.AdamW(model.denoiser.parameters(), lr=1e-5)
    g = torch.Generator().manual_seed(0)
    target = (torch.rand(args.batch, 3, args.size, args.size, generator=g) * 2 - 1).to(device)
    batch = {"target": target, "sketch": target.mean(1, keepdim=True), "reference": target.flip(-1)}

    def step(loss_fn) -> float:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        loss_fn(batch).backward()
        opt.step()
        opt.zero_grad(set_to_none=True)
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    for _ in range(2):
        step(model.denoising_loss)
    base = {"rss": peak_rss_mb(), "cuda": torch.cuda.max_memory_allocated() / 2**20 if cuda else None}
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    times = [step(model.refine_loss) for _ in range(args.repeats)]
    return {
        "K": args.k,
        "checkpointing": args.checkpointing,
        "size": args.size,
        "batch": args.batch,
        "device": str(device),
        "threads": torch.get_num_threads(),
        "malloc": "mmap >= 256 KiB (finetune.py)" if heap else "glibc default",
        "params_m": sum(p.numel() for p in model.denoiser.parameters()) / 1e6,
        "base_rss_mb": base["rss"],
        "peak_rss_mb": peak_rss_mb(),
        "base_cuda_mb": base["cuda"],
        "peak_cuda_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else None,
        "seconds_per_step": min(times),
        "seconds_all": times,
    }


def table(rows: list[dict]) -> str:
    cuda = any(r["peak_cuda_mb"] is not None for r in rows)
    head = ["K", "checkpointing", "peak RSS (MB)", "growth over pretraining step (MB)", "s / step"]
    if cuda:
        head += ["peak CUDA alloc (MB)", "CUDA growth (MB)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        cells = [str(r["K"]), "on" if r["checkpointing"] else "off", f"{r['peak_rss_mb']:.0f}",
                 f"{r['peak_rss_mb'] - r['base_rss_mb']:+.0f}", f"{r['seconds_per_step']:.2f}"]
        if cuda:
            cells += [f"{r['peak_cuda_mb']:.0f}", f"{r['peak_cuda_mb'] - r['base_cuda_mb']:+.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--steps", type=int, nargs="+", default=[5, 10, 25, 50], help="values of K")
    parser.add_argument("--checkpointing", choices=["on", "off", "both"], default="both")
    parser.add_argument("--size", type=int, default=64)
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=2, help="finetuning steps per configuration (min time kept)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--net-config", help="U-Net arguments as JSON (default: the paper's network)")
    parser.add_argument("--malloc", choices=["finetune", "default"], default="finetune",
                        help="CPU heap: finetune.py's setting (limit_heap_fragmentation) or glibc's default")
    parser.add_argument("--threads", type=int, help="CPU threads (default: torch's); 1 is steadier on a busy machine")
    parser.add_argument("--json", type=Path, help="also write the rows to this JSON file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--k", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--ckpt", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        args.checkpointing = bool(args.ckpt)
        print(json.dumps(worker(args)))
        return

    modes = {"on": [True], "off": [False], "both": [True, False]}[args.checkpointing]
    rows = []
    for ckpt in modes:
        for k in args.steps:
            cmd = [sys.executable, __file__, "--worker", "--k", str(k), "--ckpt", str(int(ckpt)), "--size",
                   str(args.size), "--batch", str(args.batch), "--repeats", str(args.repeats), "--device", args.device]
            if args.threads:
                cmd += ["--threads", str(args.threads)]
            cmd += ["--malloc", args.malloc]
            if args.net_config:
                cmd += ["--net-config", args.net_config]
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT)
            if out.returncode != 0:
                sys.exit(f"K={k} checkpointing={ckpt} failed:\n{out.stderr[-3000:]}")
            rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"K={k:3d} checkpointing={'on ' if ckpt else 'off'} peak RSS {r['peak_rss_mb']:.0f} MB "
                  f"(+{r['peak_rss_mb'] - r['base_rss_mb']:.0f}) {r['seconds_per_step']:.2f} s/step", flush=True)
    first = rows[0]
    print(f"\n{first['params_m']:.1f} M parameters, {args.size} px, batch {args.batch}, {first['device']}, "
          f"{first['threads']} threads, CPU heap: {first['malloc']}; growth = peak of the finetuning step minus "
          "peak of a pretraining step\n")
    print(table(rows))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1) + "\n")


if __name__ == "__main__":
    main()
