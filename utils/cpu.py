"""CPU settings of the entry scripts: every core for intra-op parallelism, and the heap setting of trajectory
refinement (finetune.py, bench/finetune_memory.py)."""
import ctypes
import ctypes.util
import os

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


def use_all_cores() -> None:
    """Every core for intra-op parallelism on CPU runs (PyTorch may default to fewer in containers), unless
    OMP_NUM_THREADS says otherwise."""
    import torch

    if not torch.cuda.is_available() and "OMP_NUM_THREADS" not in os.environ:
        torch.set_num_threads(os.cpu_count() or 1)
