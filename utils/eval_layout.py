"""The layout of an evaluation folder: what ``data.prepare`` and ``pretrain.py test`` write and the reports read.

The protocol's arrays (:mod:`data.protocol`) each have a sub-folder, one PNG per test image with the same name in
each. Every setting samples one output folder, named after the setting, from its own reference and is scored
against its own ground truth.
"""
from __future__ import annotations

#: Batch key of each protocol array -> its sub-folder.
INPUT_FOLDERS = {"target": "gt", "sketch": "sketch", "reference": "reference_same",
                 "reference_cross": "reference_cross", "target_recolour": "gt_recolour",
                 "reference_recolour": "reference_recolour"}

#: Setting (its output sub-folder) -> batch keys of (its reference, its ground truth). Recolouring is the
#: cross-reference setting with a known answer (data.protocol.recolour_pair).
SETTINGS = {"same": ("reference", "target"), "cross": ("reference_cross", "target"),
            "recolour": ("reference_recolour", "target_recolour")}


#: The multi-reference setting (data.protocol.multi_item), opt-in: MULTI_COUNT references per image, each holding
#: part of the image's colours. Batch key of each of its arrays -> sub-folder; a batch stacks the references as
#: MULTI_REFERENCES [B, K, 3, H, W] with MULTI_MASK [B, K, H, W] (the pixels each shows; its folders hold RGBA PNGs)
#: and holds the answer as MULTI_TRUTH.
MULTI, MULTI_COUNT = "multi", 3
MULTI_REFERENCES, MULTI_MASK, MULTI_TRUTH = "references_multi", "ref_mask_multi", "target_multi"
MULTI_REFERENCE_KEYS = tuple(f"reference_multi{k}" for k in range(MULTI_COUNT))
MULTI_FOLDERS = {MULTI_TRUTH: "gt_multi", **{key: key for key in MULTI_REFERENCE_KEYS}}
#: Its output sub-folders: the model given all the references; the best of the model given each one alone (per
#: image, by PSNR); the per-pixel mean of the references pasted as the output (no model).
MULTI_OUTPUTS = (MULTI, "multi_best_single", "multi_pasted")
#: The model given reference k alone, one sub-folder per k (what multi_best_single picks from; figures read them).
MULTI_SINGLES = tuple(f"{MULTI}_single{k}" for k in range(MULTI_COUNT))


def reference_folder(setting: str) -> str:
    """The sub-folder of the references a setting's outputs were sampled from."""
    return INPUT_FOLDERS[SETTINGS[setting][0]]


def truth_folder(setting: str) -> str:
    """The sub-folder of a setting's ground truth."""
    return INPUT_FOLDERS[SETTINGS[setting][1]]
