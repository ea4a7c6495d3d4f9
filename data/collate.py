"""Batches of items with different numbers of references (:mod:`data.reference_views`).

Each item's ``references`` (k_i, 3, H, W) is padded with zeros to the batch's largest K; ``ref_mask`` (B, K) bool
marks the real ones (True) against the padding. References of 4 channels (k_i, 4, H, W) carry which of their pixels
are shown in the last (1: part of the reference, 0: a transparent background; :mod:`data.reference_views`):
``ref_mask`` is then (B, K, H, W), False on the padding. Everything else is collated as PyTorch's default collate does,
so ``reference`` (B, 3, H, W) stays the first reference of every item.
"""
from __future__ import annotations

import torch
from torch.utils.data import default_collate


def pad_references(references: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Sets of references, each (k_i, 3, H, W), as (B, K, 3, H, W) zero-padded to the largest K, and ref_mask (B, K);
    or each (k_i, 4, H, W), and ref_mask (B, K, H, W) from the last channel (module docstring)."""
    most = max(len(r) for r in references)
    padded = references[0].new_zeros(len(references), most, *references[0].shape[1:])
    mask = torch.zeros(len(references), most, dtype=torch.bool)
    for i, refs in enumerate(references):
        padded[i, :len(refs)] = refs
        mask[i, :len(refs)] = True
    if padded.shape[2] == 4:
        return padded[:, :, :3].contiguous(), padded[:, :, 3] > 0.5
    return padded, mask


def collate_references(items: list[dict]) -> dict:
    """The default collate of ``items`` plus references (B, K, 3, H, W), zero-padded, and ref_mask (B, K)."""
    batch = default_collate([{k: v for k, v in item.items() if k != "references"} for item in items])
    batch["references"], batch["ref_mask"] = pad_references([item["references"] for item in items])
    return batch
