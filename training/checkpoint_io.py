"""Checkpoint writing: Lightning's writer made atomic (what a crash while saving leaves behind)."""
from __future__ import annotations

import os
from pathlib import Path

import torch
from pytorch_lightning.plugins.io import TorchCheckpointIO


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's checkpoint writer, made atomic on local disks: the file is written next to its destination,
    flushed to disk, and renamed over it (``os.replace``), so a crash or kill -9 while saving leaves the previous
    checkpoint whole. (Lightning's own writer stages the bytes in the system temp folder and moves them, which is a
    copy when that folder is on another filesystem.) Remote paths keep Lightning's writer."""

    def save_checkpoint(self, checkpoint: dict, path, storage_options=None) -> None:
        if "://" in str(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f".{path.name}.{os.getpid()}.partial")
        try:
            with open(partial, "wb") as handle:
                torch.save(checkpoint, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(partial, path)
        finally:
            partial.unlink(missing_ok=True)
        return None
