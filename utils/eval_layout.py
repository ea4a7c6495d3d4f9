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


def reference_folder(setting: str) -> str:
    """The sub-folder of the references a setting's outputs were sampled from."""
    return INPUT_FOLDERS[SETTINGS[setting][0]]


def truth_folder(setting: str) -> str:
    """The sub-folder of a setting's ground truth."""
    return INPUT_FOLDERS[SETTINGS[setting][1]]
