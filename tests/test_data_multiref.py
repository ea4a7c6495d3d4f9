"""Several references per sketch, data and evaluation side: the training views (count, shared hue turn, padding),
the protocol's multi-reference setting (reproducible, one region per reference) and its scoring in ``test``."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from data.collate import collate_references
from data.datamodule import ColorizationDataModule
from data.dataset import Pipeline, TrainDataset
from data.folder import load_square, scan_folder
from data.protocol import MULTI_BLANK, image_seed, multi_angle, multi_item, multi_regions, recolour_angle
from data.reference_views import ReferenceViews, partial_view
from data.stream import sample_seed
from data.synthetic import render_face
from conftest import tiny_colorizer
from utils.chroma import rotate_chroma
from utils.errors import UserError
from utils.eval_layout import MULTI_COUNT, MULTI_FOLDERS, MULTI_OUTPUTS, MULTI_SINGLES
from utils.images import save_image, to_tensor, to_uint8


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("faces")
    for i in range(10):
        save_image(render_face(300 + i, 32), root / f"face_{i:02d}.png")
    return root


def make(root: Path, **kwargs) -> ColorizationDataModule:
    return ColorizationDataModule(str(root), **{**dict(size=24, batch_size=6, num_workers=0, val_count=4), **kwargs})


# -- training views -----------------------------------------------------------------------------------------------


def test_views_come_in_counts_of_one_to_the_most_padded_and_masked(faces):
    dm = make(faces, references_max=3)
    dm.setup("fit")
    counts = []
    for _, batch in zip(range(4), dm.train_dataloader()):
        refs, shown = batch["references"], batch["ref_mask"]
        assert refs.shape[:3] == (6, shown.shape[1], 3) and shown.shape == (*refs.shape[:2], 24, 24)
        mask = shown.flatten(2).any(2)  # the real references, not the padding
        assert shown.dtype == torch.bool and shown[:, 0].all()  # the first: a whole TPS warp
        assert mask.shape[1] == mask.sum(1).max()  # K: the batch's largest count
        assert torch.equal(refs[:, 0], batch["reference"])  # the single-reference path sees the first
        assert (refs.movedim(2, -1)[~shown] == 0).all()  # padding and blanks are zeros, masked out
        assert all(refs[i, k].std() > 0 for i, k in mask.nonzero().tolist())  # real views are images
        counts += mask.sum(1).tolist()
    assert set(counts) == {1, 2, 3}
    with pytest.raises(UserError, match="references_max"):
        make(faces, references_max=0)


def test_collate_pads_each_item_to_the_largest_count():
    items = [{"target": torch.full((3, 2, 2), float(i)), "name": f"n{i}", "references": torch.ones(k, 3, 2, 2)}
             for i, k in enumerate((2, 1, 3))]
    batch = collate_references(items)
    assert batch["references"].shape == (3, 3, 3, 2, 2) and batch["name"] == ["n0", "n1", "n2"]
    assert batch["ref_mask"].tolist() == [[True, True, False], [True, False, False], [True, True, True]]
    assert torch.equal(batch["references"].flatten(2).mean(2), batch["ref_mask"].float())
    assert "references" in items[0]  # the items are left as they were
    # 4 channels: the last says which pixels are shown, and the mask is per pixel
    shown = [torch.cat([torch.ones(k, 3, 2, 2), torch.tensor([1.0, 0, 1, 1]).reshape(1, 1, 2, 2).expand(k, 1, 2, 2)],
                       dim=1) for k in (1, 2)]
    batch = collate_references([{"name": "a", "references": shown[0]}, {"name": "b", "references": shown[1]}])
    assert batch["references"].shape == (2, 2, 3, 2, 2) and batch["ref_mask"].shape == (2, 2, 2, 2)
    assert batch["ref_mask"].flatten(2).sum(2).tolist() == [[3, 0], [3, 3]]


def test_hue_turn_is_shared_by_the_target_and_all_of_its_views(faces):
    """Mirror views (no resampling) of a turned target are exactly the mirrored target; the angle that turns the
    target back to the image (searched on a 2-degree grid; gamut clipping keeps it from being exact) turns each
    view back to the mirrored image."""
    entries = scan_folder(faces)
    pipeline = Pipeline(size=24, views=ReferenceViews(3, kinds=("mirror",)), colour_rotation=1.0)
    dataset = TrainDataset(entries, pipeline, seed=0)
    angles = np.linspace(0, 2 * np.pi, 181)

    def turn_back(img: np.ndarray, original: np.ndarray) -> np.ndarray:  # mean error of each angle's turn back
        return np.array([np.abs(rotate_chroma(img, -a).astype(float) - original).mean() for a in angles])

    for position in range(3):
        item = dataset[(position, position)]
        original = load_square(entries[position].path, 24)
        errors = turn_back(to_uint8(item["target"]), original)
        assert errors.min() < 0.4 * errors[0]  # turned, and turned back
        first, *others = item["references"]
        assert (item["references"][:, 3] == 1).all()  # shown whole
        assert not torch.equal(first[:3], item["target"].flip(-1))  # the first: a TPS warp, as with one reference
        for view in others:
            view = view[:3]
            assert torch.equal(view, item["target"].flip(-1))
            assert np.argmin(turn_back(to_uint8(view), original[:, ::-1])) == np.argmin(errors)


def test_view_kinds_and_partial_views():
    img = render_face(3, 32).astype(np.float32) / 127.5 - 1
    blank = partial_view(img, np.random.default_rng(0))
    kept = (blank[..., :3] == img).all(axis=2)
    rows, cols = np.nonzero(kept)
    box = kept[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
    assert box.all() and 0.4 * 32 - 1 <= box.shape[0] <= 0.7 * 32 + 1  # one rectangle of the image, in place
    assert (blank[~kept][:, :3] == 0).all()  # the rest exactly the null value
    assert np.array_equal(blank[..., 3], kept.astype(np.float32))  # and no part of the reference
    other = np.full_like(img, 0.5)
    filled = partial_view(img, np.random.default_rng(0), other)
    assert np.array_equal(filled[kept][:, :3], img[kept]) and (filled[~kept][:, :3] == 0.5).all()
    assert (filled[..., 3] == 1).all()  # another image: shown, a distractor
    tps = Pipeline().tps
    for kind in ("tps", "mirror", "crop", "partial"):
        views = ReferenceViews(4, kinds=(kind,)).draw(render_face(3, 32), np.random.default_rng(1), tps)
        assert 1 <= len(views) <= 4 and all(v.shape == (32, 32, 4) and v.dtype == np.float32 for v in views)
        assert all(not np.allclose(v[..., :3], img) for v in views)  # none lines up with the target
        assert all(set(np.unique(v[..., 3])) <= {0.0, 1.0} for v in views)
        if kind == "partial":  # the TPS warp moves what is shown with the colours: blanks stay hidden
            for v in views[1:]:
                assert 0 < v[..., 3].mean() < 1 and (np.abs(v[v[..., 3] == 0][:, :3]) < 1e-6).all()
        else:
            assert all((v[..., 3] == 1).all() for v in views)
    with pytest.raises(ValueError, match="kinds"):
        ReferenceViews(2, kinds=("rotate",))


def test_default_options_draw_the_single_reference_as_before(faces):
    """references_max 1 (the default) draws nothing new: the item's sketch and reference are the XDoG and TPS
    draws of its own stream, in that order, and the loader collates with PyTorch's default."""
    dm = make(faces)
    dm.setup("fit")
    entry = dm.train_set.entries[2]
    item = dm.train_set[(2, 5)]
    rng = np.random.default_rng(sample_seed(0, 5))
    image = load_square(entry.path, 24)
    sketch = dm.xdog.apply(image, rng)
    assert torch.equal(item["sketch"], to_tensor(sketch))
    assert torch.equal(item["reference"], to_tensor(dm.tps.apply(image, rng)))
    assert set(item) == {"target", "sketch", "reference", "name", "seed"}
    assert dm.train_dataloader().collate_fn is torch.utils.data.default_collate


# -- the protocol's multi-reference setting -----------------------------------------------------------------------


def test_multi_item_is_reproducible_and_each_reference_shows_another_band():
    face = render_face(7, 48)
    seed = image_seed("face", 0)
    target, refs = multi_item(face, seed)
    again = multi_item(face, seed)
    assert np.array_equal(target, again[0]) and all(np.array_equal(a, b) for a, b in zip(refs, again[1]))
    other = multi_item(face, image_seed("face", 1))
    assert not np.array_equal(target, other[0]) and not np.array_equal(refs[0], other[1][0])
    assert len(refs) == MULTI_COUNT and all(r.shape == (48, 48, 4) and r.dtype == np.uint8 for r in refs)
    assert np.array_equal(target, rotate_chroma(face, multi_angle(seed)))  # the answer: the image turned
    assert multi_angle(seed) != recolour_angle(seed)  # a stream of its own
    bands = multi_regions(48, 48, seed)
    tops = [top for top, _ in bands]
    assert tops == sorted(tops) and len(set(tops)) == MULTI_COUNT  # top, middle, bottom
    assert bands[0][0] == 0 and bands[-1][1] == 48  # together they cover the image, neighbours overlapping
    assert all(bands[k][1] > bands[k + 1][0] for k in range(MULTI_COUNT - 1))
    for ref, (top, bottom) in zip(refs, bands):  # each shows its band only (mirrored), transparent grey elsewhere
        assert (ref[:top] == [MULTI_BLANK] * 3 + [0]).all() and (ref[bottom:] == [MULTI_BLANK] * 3 + [0]).all()
        assert (ref[top:bottom, :, 3] == 255).all() and (ref[top:bottom, :, :3] != MULTI_BLANK).any()
    for a in range(MULTI_COUNT):
        for b in range(a + 1, MULTI_COUNT):
            assert np.abs(refs[a][..., :3].astype(float) - refs[b][..., :3]).mean() > 5
    assert all(np.abs(r[..., :3].astype(float) - target).mean() > 5 for r in refs)  # nothing lines up


def test_the_test_set_holds_the_multi_setting_only_when_asked(faces):
    plain, multi = make(faces, batch_size=4), make(faces, batch_size=4, test_multi=True)
    for dm in (plain, multi):
        dm.setup("fit")
        dm.setup("test")
    a, b = next(iter(plain.test_dataloader())), next(iter(multi.test_dataloader()))
    assert plain.test_set is plain.val_set and "references_multi" not in a
    assert set(b) - set(a) == {"references_multi", "ref_mask_multi", "target_multi"}
    assert b["references_multi"].shape == (4, MULTI_COUNT, 3, 24, 24) and b["ref_mask_multi"].shape == (4, 3, 24, 24)
    shown = b["ref_mask_multi"].float().mean((2, 3))
    assert ((shown > 0.25) & (shown < 0.7)).all()  # each reference shows its band
    assert all(torch.equal(a[k], b[k]) for k in a if k != "name") and a["name"] == b["name"]


# -- scoring in test ----------------------------------------------------------------------------------------------


def test_test_settings_are_validated_in_one_line():
    for bad in (["same", "bogus"], [], ["same", "same"]):
        with pytest.raises(ValueError, match="test_settings") as err:
            tiny_colorizer(test_settings=bad)
        assert "\n" not in str(err.value) and isinstance(err.value, UserError)


def _stub_test(model, batch, root: Path) -> dict[str, float]:
    """Run ``test_step`` outside a trainer, recording what it logs."""
    logged: dict[str, float] = {}
    model.log = lambda name, value, **kw: logged.__setitem__(name, float(value))
    model.hparams.test_output_dir = str(root)
    model.test_step(batch, 0)
    return logged


def test_multi_scores_the_set_the_best_single_reference_and_the_paste(faces, tmp_path):
    dm = make(faces, batch_size=4, test_multi=True)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    model = tiny_colorizer(test_settings=["same", "multi"])
    # a stand-in sampler: given one reference, that reference; given several, their mean
    def stand_in(cond, **kw):  # one reference: itself; several: where they show a pixel, their mean, else grey
        if cond.ref_mask is None:
            return cond.reference
        weight = cond.ref_mask[:, :, None].float()
        return (cond.reference * weight).sum(1) / weight.sum(1).clamp_min(1)

    model.sample = stand_in
    logged = _stub_test(model, batch, tmp_path / "out")
    for setting in MULTI_OUTPUTS:
        for metric in ("psnr", "ssim", "colour_distance"):
            assert f"test/{setting}/{metric}" in logged
        assert len(list((tmp_path / "out" / setting).glob("*.png"))) == 4
    for folder in MULTI_FOLDERS.values():
        assert len(list((tmp_path / "out" / folder).glob("*.png"))) == 4
    assert not (tmp_path / "out" / "cross").exists() and "test/cross/psnr" not in logged
    assert logged["test/multi/psnr"] == logged["test/multi_pasted/psnr"]  # the stand-in pastes the mean
    refs, truth, shown = batch["references_multi"], batch["target_multi"], batch["ref_mask_multi"]
    per_ref = torch.stack([model.quality(refs[:, k] * shown[:, k, None], truth)["psnr"] for k in range(MULTI_COUNT)],
                          1)
    assert logged["test/multi_best_single/psnr"] == pytest.approx(per_ref.max(1).values.mean().item(), rel=1e-6)
    assert logged["test/multi_best_single/psnr"] > per_ref.mean().item()  # the best of three, per image
    for k, folder in enumerate(MULTI_SINGLES):  # each reference alone: its own folder and score
        assert len(list((tmp_path / "out" / folder).glob("*.png"))) == 4
        assert logged[f"test/{folder}/psnr"] == pytest.approx(per_ref[:, k].mean().item(), rel=1e-6)
    with pytest.raises(UserError, match="several references"):  # this network takes one
        model.on_test_start()
    # without the multi arrays: one line that says which data option to pass
    plain = {k: v for k, v in batch.items() if "multi" not in k}
    with pytest.raises(UserError, match="--data.test_multi"):
        _stub_test(model, plain, tmp_path / "again")


def test_multi_runs_a_network_that_takes_several_references(faces, tmp_path, one_thread):
    """The real sampler with a correspondence-warp network: the set differs from each reference alone."""
    from models.diffusion import DiffusionColorizer
    from models.unet import UNet

    torch.manual_seed(0)
    net = UNet(base_channels=16, channel_mult=(1, 2), num_blocks=1, attn_heads=2, ref_warp=1)
    model = DiffusionColorizer(net=net, steps=2, sampler="euler", test_settings=["multi"]).eval()
    for p in model.ema.parameters():  # a "trained" EMA: every path non-zero
        torch.nn.init.normal_(p, std=0.05)
    dm = make(faces, size=16, batch_size=2, test_multi=True)
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    model.hparams.test_output_dir = str(tmp_path / "out")
    model.on_test_start()  # takes several references: no complaint
    with torch.no_grad():
        logged = _stub_test(model, batch, tmp_path / "out")
    assert np.isfinite(logged["test/multi/psnr"]) and logged["test/multi/psnr"] != logged["test/multi_best_single/psnr"]
    # the figure of the setting: the references, each one alone, all of them, the answer
    from apps import cross_figure

    cols = cross_figure.columns([tmp_path / "out"], ["m"], "multi", 2, None)
    assert [title for title, _ in cols] == ["sketch", "reference 0", "reference 1", "reference 2", "m: ref 0 alone",
                                            "m: ref 1 alone", "m: ref 2 alone", "m: all", "answer"]
    assert all(images.shape == (2, 3, 16, 16) for _, images in cols)
    cross_figure.main(["--outputs", str(tmp_path / "out"), "--setting", "multi", "--count", "2",
                       "--out", str(tmp_path / "multi.png")])
    assert (tmp_path / "multi.png").stat().st_size > 0
    # training on several references: the loss of a padded batch
    dm = make(faces, size=16, batch_size=3, references_max=3)
    dm.setup("fit")
    train = next(iter(dm.train_dataloader()))
    assert torch.isfinite(model.denoising_loss(train))
