"""Datasets of (target, sketch, reference) triplets made from folders of colour images.

- :class:`TrainDataset`: each item draws a fresh XDoG sigma and a fresh TPS warp (or reads a precomputed sketch).
  Its draws come from the seed of its position in the training stream (:mod:`data.stream`), so they do not depend
  on the process or worker that loads it, and the item carries that seed for the model's own draws.
- :class:`EvalDataset`: the fixed evaluation protocol of :mod:`data.protocol` (same-reference, cross-reference and
  recolouring, and the opt-in multi-reference setting), bit-identical across runs; :func:`eval_arrays` is the same
  item as uint8 arrays, which ``data.prepare`` writes to disk.

Items are dicts of float tensors in [-1, 1]: target (3, H, W), sketch (1, H, W), reference (3, H, W) (and
reference_cross, target_recolour, reference_recolour (3, H, W) for evaluation, hints (4, H, W) for training with
colour hints, references (K, 4, H, W) for training with several references: colours, then 1 where a pixel is
shown (:mod:`data.reference_views`), the first being ``reference``) plus
the image's name.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from utils.chroma import rotate_chroma
from utils.eval_layout import MULTI_MASK, MULTI_REFERENCE_KEYS, MULTI_REFERENCES, MULTI_TRUTH
from utils.images import ImageReadError, to_tensor
from utils.lowpass import lowpass_sketch
from utils.xdog import XDoGParams

from .folder import ImageEntry, load_square, load_square_gray, warn
from .hints import HintSampler
from .protocol import (cross_reference_permutation, eval_sketch, image_seed, multi_item, recolour_angle,
                       recolour_pair, same_reference)
from .reference_aug import ReferenceAugment
from .reference_views import ReferenceViews, shown, signed
from .stream import sample_seed
from .tps import TPSParams


@dataclass(frozen=True)
class Pipeline:
    """How triplets are made: output size, XDoG and TPS parameters, optional precomputed sketches by name, the
    training references' misalignment (:mod:`data.reference_aug`) or replacement by another image, and the
    training colour hints (:mod:`data.hints`)."""

    size: int = 256
    xdog: XDoGParams = XDoGParams()
    tps: TPSParams = TPSParams()
    sketches: dict[str, Path] | None = None
    reference_augment: ReferenceAugment = ReferenceAugment()
    hints: HintSampler = HintSampler()
    sketch_lowpass: float = 0.0  # probability of a training sketch low-passed at a uniform realism weight
    reference_other: float = 0.0  # probability of a training reference that is another training image
    colour_rotation: float = 0.0  # probability of turning the hues of target and reference together (utils.chroma)
    views: ReferenceViews = ReferenceViews()  # several training references, each a view of the target

    def precomputed_sketch(self, entry: ImageEntry) -> np.ndarray | None:
        """The sketch file paired with ``entry`` (resized like the image), or None when sketches are derived."""
        if self.sketches is None:
            return None
        return load_square_gray(self.sketches[entry.name], self.size)


class TrainDataset(Dataset):
    """Training triplets with fresh random augmentation on every access."""

    def __init__(self, entries: list[ImageEntry], pipeline: Pipeline, seed: int = 0) -> None:
        self.entries = entries
        self.pipeline = pipeline
        self.seed = seed
        self._bad: set[int] = set()

    def __len__(self) -> int:
        return len(self.entries)

    def _load(self, index: int, sketch: bool = True) -> tuple[ImageEntry, np.ndarray, np.ndarray | None]:
        """Image (and precomputed sketch, unless ``sketch`` is False) at ``index``, or of the next readable entry: a
        file that fails to decode is reported once and skipped from then on."""
        for offset in range(len(self.entries)):
            i = (index + offset) % len(self.entries)
            if i in self._bad:
                continue
            entry = self.entries[i]
            try:
                image = load_square(entry.path, self.pipeline.size)
                return entry, image, self.pipeline.precomputed_sketch(entry) if sketch else None
            except ImageReadError as err:
                self._bad.add(i)
                warn(f"{err} (skipped; {len(self._bad)} unreadable training file(s) so far)")
        raise ImageReadError(f"none of the {len(self.entries)} training images could be decoded")

    def __getitem__(self, item: int | tuple[int, int]) -> dict[str, torch.Tensor | str | int]:
        """``item``: an image index, or (image index, stream position) from :class:`~data.stream.StreamSampler`
        (a plain index is its own position)."""
        index, position = item if isinstance(item, tuple) else (item, item)
        seed = sample_seed(self.seed, position)
        rng = np.random.default_rng(seed)
        entry, target, sketch = self._load(index)
        if sketch is None:
            sketch = self.pipeline.xdog.apply(target, rng)
        several = self.pipeline.views.most > 1
        angle = None
        if several:
            target, references = self._views(index, target, rng)
        else:
            reference = self.pipeline.reference_augment.apply(self.pipeline.tps.apply(target, rng), rng)
            if self.pipeline.colour_rotation and rng.random() < self.pipeline.colour_rotation:
                # one hue turn for target and reference: colours the data set makes unlikely, which only the
                # reference can tell (the sketch, drawn above from the lightness, is unchanged)
                angle = float(rng.uniform(0.0, 2.0 * np.pi))
                target, reference = rotate_chroma(target, angle), rotate_chroma(reference, angle)
            references = [to_tensor(reference)]
        item = {
            "target": to_tensor(target),
            "sketch": to_tensor(sketch),
            "reference": references[0][:3],
            "name": entry.name,
            "seed": seed,
        }
        if several:  # padded to the batch's largest count by data.collate
            item["references"] = torch.stack(references)
        if self.pipeline.hints.points:  # drawn last: the other draws of the stream stay as they were
            item["hints"] = self.pipeline.hints.sample(target, rng)
        if self.pipeline.sketch_lowpass and rng.random() < self.pipeline.sketch_lowpass:
            # DiSS's realism in training: the model learns to colour low-passed sketches, as the control gives them
            item["sketch"] = lowpass_sketch(item["sketch"][None], float(rng.random()))[0]
        if (not several and self.pipeline.reference_other and len(self.entries) > 1
                and rng.random() < self.pipeline.reference_other):
            # another image's colours, nowhere aligned with the target: what a character sheet gives at sampling
            # time; with colour hints, the hints are then the only source of the target's own colours
            item["reference"] = to_tensor(self._other_image(index, rng, angle))
        return item

    def _other_image(self, index: int, rng: np.random.Generator, angle: float | None) -> np.ndarray:
        """Another training image than ``index``, drawn from ``rng``, its hues turned by ``angle`` (None: as is)."""
        other = (index + 1 + int(rng.integers(len(self.entries) - 1))) % len(self.entries)
        image = self._load(other, sketch=False)[1]
        return image if angle is None else rotate_chroma(image, angle)

    def _views(self, index: int, target: np.ndarray,
               rng: np.random.Generator) -> tuple[np.ndarray, list[torch.Tensor]]:
        """(the target, its views as references (:mod:`data.reference_views`)). A hue turn (``colour_rotation``)
        turns the target first, so every view, and every other image a view shows, has the same turn. Each view
        then goes through ``reference_augment`` and is, with probability ``reference_other``, another image."""
        p = self.pipeline
        angle = None
        if p.colour_rotation and rng.random() < p.colour_rotation:
            angle = float(rng.uniform(0.0, 2.0 * np.pi))
            target = rotate_chroma(target, angle)
        other = (lambda: self._other_image(index, rng, angle)) if len(self.entries) > 1 else None
        references = []
        for view in p.views.draw(target, rng, p.tps, other):
            view = p.reference_augment.apply(view, rng)
            if other is not None and p.reference_other and rng.random() < p.reference_other:
                view = shown(signed(other()))
            references.append(torch.from_numpy(np.ascontiguousarray(view.transpose(2, 0, 1))))
        return target, references


def eval_arrays(entry: ImageEntry, cross: ImageEntry, pipeline: Pipeline, seed: int,
                multi: bool = False) -> dict[str, np.ndarray]:
    """One protocol item as uint8 arrays: target, sketch, reference (same), reference_cross, the recolouring
    pair target_recolour, reference_recolour (:func:`data.protocol.recolour_pair`) and, when ``multi``, the
    multi-reference item target_multi, reference_multi0.. (:func:`data.protocol.multi_item`)."""
    target = load_square(entry.path, pipeline.size)
    own_seed = image_seed(entry.name, seed)
    sketch = pipeline.precomputed_sketch(entry)
    reference = same_reference(target, own_seed, pipeline.tps)
    target_recolour, reference_recolour = recolour_pair(target, reference, recolour_angle(own_seed))
    arrays = {
        "target": target,
        "sketch": eval_sketch(target, own_seed, pipeline.xdog) if sketch is None else sketch,
        "reference": reference,
        "reference_cross": load_square(cross.path, pipeline.size),
        "target_recolour": target_recolour,
        "reference_recolour": reference_recolour,
    }
    if multi:
        arrays[MULTI_TRUTH], references = multi_item(target, own_seed, pipeline.tps)
        arrays.update(zip(MULTI_REFERENCE_KEYS, references))
    return arrays


class EvalDataset(Dataset):
    """The evaluation protocol over a fixed list of (decodable) images: deterministic given (entries, seed); with
    ``multi``, items also hold the multi-reference setting: references_multi (K, 3, H, W), ref_mask_multi
    (K, H, W: the pixels each shows) and target_multi (:data:`utils.eval_layout.MULTI_REFERENCES`)."""

    def __init__(self, entries: list[ImageEntry], pipeline: Pipeline, seed: int = 0, multi: bool = False) -> None:
        self.entries = entries
        self.pipeline = pipeline
        self.seed = seed
        self.multi = multi
        self.cross = cross_reference_permutation(len(entries), seed)

    def __len__(self) -> int:
        return len(self.entries)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor | str]:
        entry = self.entries[index]
        arrays = eval_arrays(entry, self.entries[self.cross[index]], self.pipeline, self.seed, self.multi)
        item: dict[str, torch.Tensor | str] = {key: to_tensor(value) for key, value in arrays.items()}
        if self.multi:  # RGBA: the colours, and the pixels shown
            references = torch.stack([item.pop(key) for key in MULTI_REFERENCE_KEYS])
            item[MULTI_REFERENCES], item[MULTI_MASK] = references[:, :3].contiguous(), references[:, 3] > 0
        item["name"] = entry.name
        return item
