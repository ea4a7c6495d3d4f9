"""``ColorizationDataModule``: training, validation and test triplets from folders of colour images.

- train: every image of ``root`` (minus the validation hold-out), with a fresh XDoG sigma and TPS warp per access;
- val: ``val_root``, or ``val_count`` images held out of ``root`` by a seeded split;
- test: ``test_root``, or the validation images.

Validation and test batches follow the evaluation protocol of :mod:`data.protocol` (same-reference warp from a
per-image seed, cross-reference from a seeded derangement, the recolouring pair) and are bit-identical across runs
for a given ``seed``.
``sketch_root`` optionally supplies precomputed sketches for the images of ``root`` (paired by name); otherwise
sketches are made with XDoG. Unreadable images are skipped with a warning line each and a count.

Batches are dicts: target (B, 3, H, W), sketch (B, 1, H, W), reference (B, 3, H, W), [reference_cross,
target_recolour, reference_recolour (B, 3, H, W)] floats in [-1, 1], and name (list of str: path relative to its
folder, no extension). Training with ``references_max`` > 1 adds references (B, K, 3, H, W) and ref_mask
(B, K, H, W: the pixels each shows); testing with ``test_multi`` adds references_multi (B, 3, 3, H, W),
ref_mask_multi (B, 3, H, W) and target_multi.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytorch_lightning as pl
import torch
from torch.utils.data import DataLoader

from utils.errors import UserError
from utils import xdog

from .collate import collate_references
from .dataset import EvalDataset, Pipeline, TrainDataset
from .folder import ImageEntry, pair_by_name, readable, scan_folder
from .stream import StreamSampler
from .hints import PATCH_FRACTION, HintSampler
from .reference_aug import ReferenceAugment
from .reference_views import ReferenceViews
from .tps import TPSParams

# SeedSequence words that separate the random streams derived from the one ``seed``.
_SPLIT_STREAM = 101


class ColorizationDataModule(pl.LightningDataModule):
    """Sketch + reference -> colour triplets from folders of colour images (see the module docstring).

    Args:
        root: folder of colour training images (searched recursively; jpg, png, webp, bmp); validate and test need
            it only without val_root / test_root.
        size: side of the square images (short side resized, centre crop).
        batch_size: images per batch.
        num_workers: DataLoader worker processes (0 loads in the main process).
        val_root: folder of validation images; None holds ``val_count`` images out of ``root``.
        test_root: folder of test images; None tests on the validation images.
        val_count: how many images of ``root`` the seeded split holds out when ``val_root`` is None.
        sketch_root: folder of precomputed sketches paired by name with the images of ``root``; None uses XDoG.
        seed: seeds the split, the evaluation protocol and the training augmentation stream.
        limit_train: use only the first ``limit_train`` training images (None: all).
        xdog_sigmas: XDoG blur sigmas, one drawn per training sample (and per test image from its seed).
        xdog_k: ratio of the two XDoG blurs.
        xdog_p: XDoG sharpening strength.
        xdog_epsilon: XDoG threshold on the sharpened luminance in [0, 1].
        xdog_ramp: steepness of the XDoG tanh ramp (the paper's "phi"; 1e9 is a hard step).
        xdog_phi: the former name of ``xdog_ramp``, read from configs saved by older runs (overrides it when set).
        xdog_contrast: "stretch" (default: the luminance's 1st..99th percentiles stretched to [0, 1] before the
            threshold, so pale art keeps its lines) or "none" (the paper's XDoG).
        tps_grid: control points per side of the TPS warp of the training reference (tps_* change training only:
            the evaluation protocol warps with its own fixed parameters, as ``data.prepare`` does).
        tps_shift: largest control-point offset, as a fraction of the image side.
        tps_rotation: largest rotation of the reference in degrees (0 disables it).
        reference_flip: probability of mirroring a training reference (:mod:`data.reference_aug`).
        reference_patches: shuffle a training reference's tiles on this grid per side (0: off).
        hint_points: the most colour-hint points per training image (:mod:`data.hints`; 0: no hints). Needs a
            network with 11 input channels (``configs/variants/hints.yaml``).
        hint_drop: probability that a training image gets no hints (hint-free use stays the default).
        hint_patch: the largest hint patch side as a fraction of the image side (Zhang et al.: 9/256).
        reference_other: probability that a training reference is another training image instead of the target's
            warp (colours that do not line up; with hints, the hints then carry the target's colours).
        sketch_lowpass: probability that a training sketch is low-passed at a realism weight drawn from U(0, 1)
            (:mod:`utils.lowpass`, DiSS), so that the realism control of sampling is a condition the model knows.
        colour_rotation: probability that a training target and its reference have their hues turned together by
            one uniform angle in CIELAB, lightness kept (:mod:`utils.chroma`): colours the data set makes unlikely,
            which the model can only take from the reference.
        references_max: the most references per training image (1: one, as before). Above 1, each image draws
            K ~ U{1..references_max} views of itself (TPS warp, mirror, crop-and-zoom, partial view;
            :mod:`data.reference_views`), hue-turned together with it, and batches gain references (B, K, 3, H, W)
            padded with zeros and ref_mask (B, K, H, W) (:mod:`data.collate`); reference stays the first one.
        test_multi: test batches also hold the protocol's multi-reference setting (references_multi (B, 3, 3, H, W),
            ref_mask_multi, target_multi; :func:`data.protocol.multi_item`), which ``--model.test_settings`` with
            multi scores.
    """

    def __init__(
        self,
        root: str | None = None,
        size: int = 256,
        batch_size: int = 32,
        num_workers: int = 4,
        val_root: str | None = None,
        test_root: str | None = None,
        val_count: int = 64,
        sketch_root: str | None = None,
        seed: int = 0,
        limit_train: int | None = None,
        xdog_sigmas: tuple[float, ...] = xdog.SIGMAS,
        xdog_k: float = xdog.K,
        xdog_p: float = xdog.P,
        xdog_epsilon: float = xdog.EPSILON,
        xdog_ramp: float = xdog.RAMP,
        xdog_contrast: xdog.Contrast = xdog.CONTRAST,
        xdog_phi: float | None = None,
        tps_grid: int = 5,
        tps_shift: float = 0.05,
        tps_rotation: float = 10.0,
        reference_flip: float = 0.0,
        reference_patches: int = 0,
        hint_points: int = 0,
        hint_drop: float = 0.5,
        hint_patch: float = PATCH_FRACTION,
        reference_other: float = 0.0,
        sketch_lowpass: float = 0.0,
        colour_rotation: float = 0.0,
        references_max: int = 1,
        test_multi: bool = False,
    ) -> None:
        super().__init__()
        self.save_hyperparameters()
        if size < 8 or batch_size < 1 or num_workers < 0:
            raise UserError(
                f"need size >= 8, batch_size >= 1, num_workers >= 0 (got {size}, {batch_size}, {num_workers})"
            )
        if limit_train is not None and limit_train < 1:
            raise UserError(f"limit_train must be a positive number of images or None, got {limit_train}")
        try:
            ramp = xdog_ramp if xdog_phi is None else xdog_phi
            self.xdog = xdog.XDoGParams(tuple(xdog_sigmas), xdog_k, xdog_p, xdog_epsilon, ramp, xdog_contrast)
            self.tps = TPSParams(tps_grid, tps_shift, tps_rotation)
            self.reference_augment = ReferenceAugment(reference_flip, reference_patches)
            self.hints = HintSampler(hint_points, hint_drop, hint_patch)
            self.views = ReferenceViews(references_max)
            for name, p in (("sketch_lowpass", sketch_lowpass), ("reference_other", reference_other),
                            ("colour_rotation", colour_rotation)):
                if not 0.0 <= p <= 1.0:
                    raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
            self.sketch_lowpass, self.reference_other = sketch_lowpass, reference_other
            self.colour_rotation = colour_rotation
        except ValueError as err:
            raise UserError(str(err)) from None
        self.root, self.val_root, self.test_root, self.sketch_root = root, val_root, test_root, sketch_root
        self.size, self.batch_size, self.num_workers = size, batch_size, num_workers
        self.val_count, self.seed, self.limit_train = val_count, seed, limit_train
        self.test_multi = test_multi
        self.train_set: TrainDataset | None = None
        self.val_set: EvalDataset | None = None
        self.test_set: EvalDataset | None = None
        self._split: tuple[list[ImageEntry], list[ImageEntry]] | None = None
        self._sketches: dict[str, Path] | None = None

    # -- folders -------------------------------------------------------------------------------------------------

    def _root_split(self) -> tuple[list[ImageEntry], list[ImageEntry]]:
        """(train, held-out val) entries of ``root``; the split is made on names, before any file is screened."""
        if self._split is None:
            if self.root is None:
                raise UserError("no training images: pass --data.root DIR (validate and test can do without it given "
                                "--data.val_root / --data.test_root)")
            entries = scan_folder(self.root)
            if self.sketch_root is not None:
                self._sketches = pair_by_name(entries, self.sketch_root)
            if self.val_root is not None:
                self._split = (entries, [])
            else:
                if not 2 <= self.val_count < len(entries):
                    raise UserError(
                        f"{self.root} has {len(entries)} images: cannot hold out val_count={self.val_count} for "
                        "validation (need 2 <= val_count < number of images); change val_count or pass val_root"
                    )
                order = np.random.default_rng([self.seed, _SPLIT_STREAM]).permutation(len(entries))
                held = set(order[: self.val_count].tolist())
                self._split = (
                    [e for i, e in enumerate(entries) if i not in held],
                    [e for i, e in enumerate(entries) if i in held],
                )
        return self._split

    def _pipeline(self, with_sketches: bool, train: bool) -> Pipeline:
        """The training pipeline, or the evaluation protocol's: hint-free, with its own references, warped by the
        protocol's fixed TPS (so that tps_* options change training only, and every model is scored on the same
        references, the ones ``data.prepare`` writes)."""
        sketches = self._sketches if with_sketches else None
        if not train:
            return Pipeline(self.size, self.xdog, TPSParams(), sketches)
        return Pipeline(self.size, self.xdog, self.tps, sketches, self.reference_augment, self.hints,
                        self.sketch_lowpass, self.reference_other, self.colour_rotation, self.views)

    def _eval_set(self, folder: str | None, what: str, multi: bool = False) -> EvalDataset:
        """Protocol dataset over ``folder``, or over the held-out split of ``root`` when ``folder`` is None (with the
        multi-reference setting when ``multi``)."""
        if folder is None:
            entries = readable(self._root_split()[1], decode=True, what=f"{what} images held out of {self.root}")
            if self._sketches is not None:
                sketches = readable(
                    [ImageEntry(e.name, self._sketches[e.name]) for e in entries],
                    decode=True,
                    what=f"{what} sketches in {self.sketch_root}",
                )
                names = {s.name for s in sketches}
                entries = [e for e in entries if e.name in names]
            return EvalDataset(entries, self._pipeline(with_sketches=True, train=False), self.seed, multi)
        entries = readable(scan_folder(folder), decode=True, what=f"{what} images in {folder}")
        return EvalDataset(entries, self._pipeline(with_sketches=False, train=False), self.seed, multi)

    # -- Lightning hooks -----------------------------------------------------------------------------------------

    def setup(self, stage: str) -> None:
        if stage == "fit" and self.train_set is None:
            train = self._root_split()[0][: self.limit_train]
            train = readable(train, decode=False, what=f"training images in {self.root}")
            self.train_set = TrainDataset(train, self._pipeline(with_sketches=True, train=True), self.seed)
        if stage in ("fit", "validate") and self.val_set is None:
            self.val_set = self._eval_set(self.val_root, "validation")
        if stage == "test" and self.test_set is None:
            if self.test_root is None and self.val_set is not None and not self.test_multi:
                self.test_set = self.val_set
            else:
                self.test_set = self._eval_set(self.test_root if self.test_root is not None else self.val_root, "test",
                                               self.test_multi)

    def _loader(self, dataset, sampler=None, collate_fn=None) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.batch_size,
            sampler=sampler,
            collate_fn=collate_fn,
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
        )

    def _consumed_batches(self) -> int:
        """Batches this rank has trained on so far (restored from a checkpoint on resume)."""
        trainer = self.trainer
        return 0 if trainer is None else trainer.global_step * trainer.accumulate_grad_batches

    def train_dataloader(self) -> DataLoader:
        if self.train_set is None:
            self.setup("fit")
        trainer = self.trainer
        rank, world = (trainer.global_rank, trainer.world_size) if trainer is not None else (0, 1)
        sampler = StreamSampler(len(self.train_set), self.batch_size, self.seed, self._consumed_batches, rank, world)
        collate = collate_references if self.views.most > 1 else None  # None: PyTorch's default collate
        return self._loader(self.train_set, sampler=sampler, collate_fn=collate)

    def val_dataloader(self) -> DataLoader:
        if self.val_set is None:
            self.setup("validate")
        return self._loader(self.val_set)

    def test_dataloader(self) -> DataLoader:
        if self.test_set is None:
            self.setup("test")
        return self._loader(self.test_set)
