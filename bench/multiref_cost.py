"""Time and peak memory of several references against their number K: one denoiser call (a sampling step) and one
training step (denoising loss, backward, AdamW) of the correspondence-warp U-Net, at 64 px (configs/cpu64.yaml's
widths) and 256 px (configs/pretrain.yaml's), plus the warp's attention cost per level, counted.

Each (size, K) runs in a fresh process, so that its peak RSS (getrusage; CPU) or peak CUDA allocation is its own.
The warp's softmax runs over all K h w reference positions for each of the h w sketch positions at its level L
(h = size / 2^L): K (h w)^2 weights per image, computed in chunks of at most 2^25
(models.correspondence.CorrespondenceWarp).

    python bench/multiref_cost.py                               # K in 1 2 4 8, 64 and 256 px, CPU
    python bench/multiref_cost.py --sizes 64 --counts 1 2 4 8 16 --device cuda
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
NETS = {  # the overlay's level-2 warp on each base config's widths
    64: dict(base_channels=32, channel_mult=(1, 2, 2, 4), num_blocks=1, mid_attention=True, attn_heads=4),
    256: dict(base_channels=64, channel_mult=(1, 2, 4, 8), num_blocks=2, mid_attention=True, attn_heads=4,
              resample="pool", input_skip=False),
}
WARP_LEVEL = 2


def attention_cost(size: int, k: int, channels: int, level: int) -> tuple[int, float]:
    """(attention weights per image, GMAC per image) of the warp at ``level``: K (h w)^2 weights, each from a
    ``channels``-dim dot product, then 3 colour MACs."""
    n = (size // 2**level) ** 2
    weights = k * n * n
    return weights, weights * (channels + 3) / 1e9


def worker(args: argparse.Namespace) -> dict:
    import torch

    sys.path.insert(0, str(ROOT))
    from models.denoiser import Cond, Denoiser
    from models.schedules import PhiSchedule
    from models.unet import UNet

    device = torch.device(args.device)
    cuda = device.type == "cuda"
    torch.manual_seed(0)
    net = UNet(**NETS[args.size], ref_warp=WARP_LEVEL, ref_concat=True)
    denoiser = Denoiser(net, PhiSchedule()).to(device)
    opt = torch.optim.AdamW(net.parameters(), lr=1e-5)
    g = torch.Generator().manual_seed(0)
    b, s = args.batch, args.size
    target = (torch.rand(b, 3, s, s, generator=g) * 2 - 1).to(device)
    refs = (torch.rand(b, args.k, 3, s, s, generator=g) * 2 - 1).to(device)
    cond = Cond(target.mean(1, keepdim=True), refs if args.k > 1 else refs[:, 0])
    sigma = torch.full((b,), 1.0, device=device)

    def timed(fn) -> float:
        if cuda:
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if cuda:
            torch.cuda.synchronize()
        return time.perf_counter() - start

    def sample_step() -> None:
        with torch.no_grad():
            denoiser(target + sigma[:, None, None, None] * torch.randn_like(target), sigma, cond)

    def train_step() -> None:
        loss = (denoiser(target + torch.randn_like(target), sigma, cond) - target).pow(2).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    sample_step(), train_step()  # warm-up (allocator, kernels)
    sample_s = min(timed(sample_step) for _ in range(args.repeats))
    train_s = min(timed(train_step) for _ in range(args.repeats))
    weights, gmac = attention_cost(s, args.k, NETS[s]["base_channels"] * NETS[s]["channel_mult"][WARP_LEVEL],
                                   WARP_LEVEL)
    return {"size": s, "K": args.k, "batch": b, "device": str(device), "threads": torch.get_num_threads(),
            "sample_step_s": sample_s, "train_step_s": train_s,
            "peak_mb": (torch.cuda.max_memory_allocated() / 2**20 if cuda
                        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "warp_weights_m": weights / 1e6, "warp_gmac": gmac}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="+", default=[64, 256], choices=sorted(NETS))
    parser.add_argument("--counts", type=int, nargs="+", default=[1, 2, 4, 8], help="numbers of references K")
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats (the minimum is reported)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", type=Path, help="also write the rows to this file")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--k", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    if any(k < 1 for k in args.counts):
        parser.error("--counts must be positive")
    rows = []
    print("| size px | K | sampling step ms | training step ms | peak MB | warp weights (M per image) | warp GMAC |\n"
          "|---|---|---|---|---|---|---|")
    for size in args.sizes:
        for k in args.counts:
            cmd = [sys.executable, __file__, "--worker", "--size", str(size), "--k", str(k), "--batch",
                   str(args.batch), "--repeats", str(args.repeats), "--device", args.device]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode:
                print(f"size {size}, K {k}: failed\n{done.stderr.strip().splitlines()[-1]}", file=sys.stderr)
                continue
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            r = rows[-1]
            print(f"| {size} | {k} | {r['sample_step_s'] * 1e3:.0f} | {r['train_step_s'] * 1e3:.0f} | "
                  f"{r['peak_mb']:.0f} | {r['warp_weights_m']:.1f} | {r['warp_gmac']:.2f} |", flush=True)
    print(f"(batch {args.batch}, {args.device}, {rows[0]['threads'] if rows else '?'} threads; best of "
          f"{args.repeats}; peak MB: the process's peak RSS on a CPU, the peak CUDA allocation on a GPU)")
    print("the warp's attention per image and reference, at each level L (million weights / GMAC):")
    for size in args.sizes:
        net = NETS[size]
        costs = [attention_cost(size, 1, net["base_channels"] * mult, level)
                 for level, mult in enumerate(net["channel_mult"])]
        print(f"  {size} px: " + ", ".join(f"L{level} {w / 1e6:.2f} / {g:.2f}" for level, (w, g) in enumerate(costs)))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
