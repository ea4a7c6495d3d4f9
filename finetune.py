"""SSIMBaD trajectory refinement (finetuning a pretrained checkpoint) and testing, with LightningCLI.

    python finetune.py fit --config configs/finetune.yaml --data.root DIR --model.init_checkpoint CKPT
    python finetune.py fit ... --model.strategy lpips-vgg | clip | mse --model.refine_steps 50
    python finetune.py test --config configs/finetune.yaml --data.root DIR --data.test_root TEST --ckpt_path CKPT
    python finetune.py test ... --model.guidance_ssim_scale S [--model.guidance_target gt  (oracle, analysis only)]

The model is :class:`models.refiner.TrajectoryRefiner`; every option is listed by ``python finetune.py fit --help``.
"""
import ctypes
import ctypes.util

import torch

from utils.cli import run_cli

M_MMAP_THRESHOLD = -3  # glibc mallopt parameter


def limit_heap_fragmentation(threshold: int = 256 * 1024) -> bool:
    """On glibc, serve allocations of ``threshold`` bytes and more with mmap, returned to the system when freed.

    A checkpointed trajectory interleaves small long-lived allocations (each step's input, autograd nodes) with the
    transient activations of every step and of its recomputation. glibc's default raises its mmap threshold after
    the first large free, so those activations land in the heap, whose free holes it keeps: on the CPU the resident
    memory then grows by several MB per sampler step although live memory does not (bench/finetune_memory.py).
    Returns whether the setting was applied (False off glibc).
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_MMAP_THRESHOLD, threshold))
    except (OSError, AttributeError):
        return False


if __name__ == "__main__":
    if not torch.cuda.is_available():  # CUDA memory has its own caching allocator
        limit_heap_fragmentation()
    run_cli("models.refiner.TrajectoryRefiner")
