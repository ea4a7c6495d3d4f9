"""ColorizationDataModule: batch contract, seeded split, reproducible training stream, precomputed sketches."""
from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from data.datamodule import ColorizationDataModule
from data.synthetic import render_face
from utils.errors import UserError
from utils.images import save_image


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    """12 demo faces of 48 px, two of them in a sub-folder."""
    root = tmp_path_factory.mktemp("faces")
    for i in range(12):
        sub = "group/" if i >= 10 else ""
        save_image(render_face(200 + i, 48), root / f"{sub}face_{i:02d}.png")
    return root


def make(root: Path, **kwargs) -> ColorizationDataModule:
    options = dict(size=32, batch_size=4, num_workers=0, val_count=4, seed=0)
    options.update(kwargs)
    return ColorizationDataModule(str(root), **options)


def first_batch(loader) -> dict:
    return next(iter(loader))


def check_images(batch: dict, keys: tuple[str, ...], b: int, size: int) -> None:
    for key in keys:
        channels = 1 if key == "sketch" else 3
        x = batch[key]
        assert x.shape == (b, channels, size, size) and x.dtype == torch.float32, key
        assert x.min() >= -1 and x.max() <= 1 and x.std() > 0.05, key


def test_batches_follow_the_contract(faces):
    dm = make(faces)
    dm.setup("fit")
    train = first_batch(dm.train_dataloader())
    assert set(train) == {"target", "sketch", "reference", "name", "seed"}
    check_images(train, ("target", "sketch", "reference"), 4, 32)
    assert train["seed"].dtype == torch.int64 and len(set(train["seed"].tolist())) == 4  # one draw seed a sample
    assert isinstance(train["name"], list) and all(isinstance(n, str) for n in train["name"])
    val = first_batch(dm.val_dataloader())
    images = ("target", "sketch", "reference", "reference_cross", "target_recolour", "reference_recolour")
    assert set(val) == {*images, "name"}
    check_images(val, images, 4, 32)
    # sketches are dark lines on white: mostly +1
    assert (train["sketch"] > 0).float().mean() > 0.6


def test_split_is_seeded_disjoint_and_names_are_relative(faces):
    dm = make(faces)
    dm.setup("fit")
    train = [e.name for e in dm.train_set.entries]
    val = [e.name for e in dm.val_set.entries]
    assert len(val) == 4 and len(train) == 8 and not set(train) & set(val)
    assert sorted(train + val) == sorted([f"face_{i:02d}" for i in range(10)] + ["group/face_10", "group/face_11"])
    other = make(faces, seed=1)
    other.setup("fit")
    assert [e.name for e in other.val_set.entries] != val
    dm.setup("test")
    assert dm.test_set is dm.val_set  # no test_root: test on the validation images


def test_eval_batches_are_bit_identical_and_cross_is_another_image(faces):
    a, b = make(faces), make(faces)
    a.setup("validate")
    b.setup("validate")
    ba, bb = first_batch(a.val_dataloader()), first_batch(b.val_dataloader())
    for key in ("target", "sketch", "reference", "reference_cross"):
        assert torch.equal(ba[key], bb[key])
    for i in range(4):
        assert not torch.equal(ba["reference_cross"][i], ba["target"][i])
        assert not torch.equal(ba["reference"][i], ba["target"][i])  # warped, not copied


def test_tps_options_change_training_references_only(faces):
    """The evaluation protocol warps with its own fixed TPS, so models trained with other warps are scored on the
    same references (those data.prepare writes)."""
    plain, strong = make(faces), make(faces, tps_shift=0.15, tps_rotation=30.0)
    for dm in (plain, strong):
        dm.setup("fit")
    for key in ("target", "sketch", "reference", "reference_cross"):
        assert torch.equal(first_batch(plain.val_dataloader())[key], first_batch(strong.val_dataloader())[key])
    a, b = plain.train_set[0], strong.train_set[0]
    assert torch.equal(a["target"], b["target"]) and not torch.equal(a["reference"], b["reference"])


def test_training_stream_is_reproducible_and_fresh(faces):
    def run(seed: int) -> list[dict]:
        dm = make(faces, seed=seed)
        dm.setup("fit")
        loader = dm.train_dataloader()
        return [first_batch(loader), first_batch(loader)]

    a, b, c = run(0), run(0), run(1)
    for key in ("target", "sketch", "reference"):
        assert torch.equal(a[0][key], b[0][key]) and torch.equal(a[1][key], b[1][key])
    assert a[0]["name"] == b[0]["name"]
    assert not torch.equal(a[0]["reference"], c[0]["reference"])
    # the same image at another place of the stream gets a new warp; at the same place, the same one
    dm = make(faces)
    dm.setup("fit")
    first, again, later = dm.train_set[(0, 3)], dm.train_set[(0, 3)], dm.train_set[(0, 11)]
    assert torch.equal(first["target"], later["target"]) and first["seed"] != later["seed"]
    assert torch.equal(first["reference"], again["reference"])
    assert not torch.equal(first["reference"], later["reference"])


def test_worker_processes_are_reproducible(faces):
    def run() -> dict:
        dm = make(faces, num_workers=1)
        dm.setup("fit")
        return first_batch(dm.train_dataloader())

    a, b = run(), run()
    assert a["name"] == b["name"] and torch.equal(a["reference"], b["reference"])


def test_picklable_before_and_after_setup(faces):
    dm = make(faces)
    pickle.loads(pickle.dumps(dm))
    dm.setup("fit")
    first_batch(dm.train_dataloader())
    clone = pickle.loads(pickle.dumps(dm))
    assert len(clone.train_set) == len(dm.train_set)


def test_val_and_test_roots_and_limit_train(faces, tmp_path):
    test = tmp_path / "test"
    for i in range(3):
        save_image(render_face(300 + i, 40), test / f"t{i}.png")
    dm = make(faces, val_root=str(test), test_root=str(test), limit_train=5)
    dm.setup("fit")
    dm.setup("test")
    assert len(dm.train_set) == 5 and len(dm.val_set) == 3
    assert sorted(first_batch(dm.test_dataloader())["name"]) == ["t0", "t1", "t2"]


def test_precomputed_sketches_are_used_by_name(faces, tmp_path):
    sketches = tmp_path / "sketches"
    for p in faces.rglob("*.png"):
        name = p.relative_to(faces).with_suffix(".png")
        save_image(np.zeros((48, 48), np.uint8), sketches / name)  # all-black sketches
    dm = make(faces, sketch_root=str(sketches))
    dm.setup("fit")
    assert (first_batch(dm.train_dataloader())["sketch"] == -1).all()
    assert (first_batch(dm.val_dataloader())["sketch"] == -1).all()


def test_bad_options_are_user_errors(faces):
    with pytest.raises(UserError, match="val_count"):
        make(faces, val_count=12).setup("fit")
    with pytest.raises(UserError, match="sigmas"):
        make(faces, xdog_sigmas=())
    with pytest.raises(UserError, match="TPS"):
        make(faces, tps_grid=1)
