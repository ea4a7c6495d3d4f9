"""Colour hints: the training draws, the user's hint file, the network input, and the overlay end to end."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from apps.colorize_inputs import Letterbox, prepare_hints
from data.hints import HintSampler
from models.denoiser import Cond, Denoiser
from models.schedules import PhiSchedule
from models.unet import UNet
from utils.errors import UserError

TINY = dict(base_channels=16, channel_mult=(1, 2), num_blocks=1, attn_heads=2)


def test_training_hints_take_the_targets_colours():
    target = np.zeros((32, 32, 3), np.uint8)
    target[:16], target[16:] = (255, 0, 0), (0, 0, 255)
    always, never = HintSampler(points=16, drop=0.0), HintSampler(points=16, drop=1.0)
    assert not never.sample(target, np.random.default_rng(0)).any()
    found = 0
    for seed in range(20):
        hints = always.sample(target, np.random.default_rng(seed))
        mask = hints[3] > 0
        assert mask.any() and set(hints[3].unique().tolist()) <= {0.0, 1.0}
        assert not hints[:3][:, ~mask].any()  # colour only where the mask is
        top = mask.clone()
        top[16:] = False
        if top.any():  # inside the red half (patches that straddle the border are mixed)
            found += bool((hints[:, top][:3].T == torch.tensor([1.0, -1.0, -1.0])).all(dim=1).any())
    assert found > 5
    one = HintSampler(points=1, drop=0.0).sample(target, np.random.default_rng(3))[3]
    rows, cols = one.nonzero().T
    assert int(one.sum()) == (rows.max() - rows.min() + 1) * (cols.max() - cols.min() + 1)  # one square patch
    with pytest.raises(ValueError):
        HintSampler(points=-1)
    with pytest.raises(ValueError):
        HintSampler(points=4, drop=2.0)


def test_training_items_carry_hints_only_when_asked(faces):
    from data.dataset import Pipeline, TrainDataset
    from data.folder import scan_folder

    entries = scan_folder(faces)
    plain = TrainDataset(entries, Pipeline(size=16))[3]
    hinted = TrainDataset(entries, Pipeline(size=16, hints=HintSampler(8, 0.0)))[3]
    assert "hints" not in plain and hinted["hints"].shape == (4, 16, 16)
    for key in ("target", "sketch", "reference"):  # drawn last: the rest of the stream is unchanged
        assert torch.equal(plain[key], hinted[key])


def test_hint_patch_sets_the_largest_patch_side():
    target = np.full((64, 64, 3), 128, np.uint8)
    sides = {}
    for fraction in (9 / 256, 0.25):
        masks = [HintSampler(1, 0.0, fraction).sample(target, np.random.default_rng(s))[3] for s in range(40)]
        sides[fraction] = max(int(m.sum()) ** 0.5 for m in masks)
    assert sides[9 / 256] <= 2 and 8 < sides[0.25] <= 16, sides
    with pytest.raises(ValueError, match="hint_patch"):
        HintSampler(4, 0.5, 0.0)


def test_reference_other_takes_another_images_colours(faces):
    """With probability reference_other the reference is another training image, unwarped; the rest of the
    item (target, sketch, hints) stays as drawn."""
    from data.dataset import Pipeline, TrainDataset
    from data.folder import load_square, scan_folder

    entries = scan_folder(faces)
    own = TrainDataset(entries, Pipeline(size=16, hints=HintSampler(8, 0.0)))
    other = TrainDataset(entries, Pipeline(size=16, hints=HintSampler(8, 0.0), reference_other=1.0))
    originals = {e.name: torch.from_numpy(load_square(e.path, 16)) for e in entries}
    for i in range(6):
        a, b = own[i], other[i]
        for key in ("target", "sketch", "hints"):
            assert torch.equal(a[key], b[key])
        as_uint8 = ((b["reference"] + 1) * 127.5).round().permute(1, 2, 0).to(torch.uint8)
        match = [name for name, image in originals.items() if torch.equal(image, as_uint8)]
        assert match and match[0] != b["name"]
    never = TrainDataset(entries, Pipeline(size=16, hints=HintSampler(8, 0.0), reference_other=0.0))[2]
    assert torch.equal(never["reference"], own[2]["reference"])


def _denoisers():
    torch.manual_seed(0)
    net = UNet(**TINY, in_channels=11)
    torch.nn.init.normal_(net.out[-1].weight, std=0.1)
    return Denoiser(net, PhiSchedule()), Denoiser(UNet(**TINY), PhiSchedule())


def test_no_hints_is_zero_hints_and_hints_change_the_output():
    hinted, plain = _denoisers()
    x, sketch, ref = torch.randn(2, 3, 16, 16), torch.rand(2, 1, 16, 16), torch.rand(2, 3, 16, 16)
    hints = torch.zeros(2, 4, 16, 16)
    with torch.no_grad():
        none = hinted(x, 1.0, Cond(sketch, ref))
        torch.testing.assert_close(none, hinted(x, 1.0, Cond(sketch, ref, hints)), rtol=0, atol=0)
        hints[:, :3, 4:8, 4:8], hints[:, 3, 4:8, 4:8] = 1.0, 1.0
        assert (hinted(x, 1.0, Cond(sketch, ref, hints)) - none).abs().max() > 1e-3
        with pytest.raises(ValueError, match="without colour hints"):
            plain(x, 1.0, Cond(sketch, ref, hints))


def test_user_hint_file_is_letterboxed_and_keeps_thin_strokes(tmp_path):
    rgba = np.zeros((40, 80, 4), np.uint8)  # a wide sketch: letterboxed into 80 x 80, resized to 16
    rgba[10, 10:30] = (0, 255, 0, 255)  # a 1-px green stroke
    rgba[20:40, 60:80] = (255, 0, 0, 255)  # a red block
    Image.fromarray(rgba, "RGBA").save(tmp_path / "hints.png")
    hints = prepare_hints(tmp_path / "hints.png", Letterbox(40, 80, 16))
    mask = hints[3] > 0
    assert hints.shape == (4, 16, 16) and not mask[:4].any() and not mask[12:].any()  # padding holds no hints
    green = hints[:3, 6, 2:6]  # row 10 + 20 padding -> 30 / 5 = 6
    assert mask[6, 2:6].all() and torch.allclose(green, torch.tensor([-1.0, 1.0, -1.0])[:, None].expand(3, 4))
    torch.testing.assert_close(hints[:3, 9:12, 12:16], torch.tensor([1.0, -1.0, -1.0])[:, None, None].expand(3, 3, 4))
    Image.fromarray(rgba[..., :3]).save(tmp_path / "opaque.png")
    with pytest.raises(UserError, match="no transparency"):
        prepare_hints(tmp_path / "opaque.png", Letterbox(40, 80, 16))
    with pytest.raises(UserError, match="sketch's size"):
        prepare_hints(tmp_path / "hints.png", Letterbox(40, 40, 16))


def test_hint_network_needs_hint_data():
    from conftest import tiny_colorizer
    from test_pretrain import fixed_batch

    from models.diffusion import DiffusionColorizer

    model = DiffusionColorizer(net=UNet(**TINY, in_channels=11))
    with pytest.raises(UserError, match="hint_points"):
        model.denoising_loss(fixed_batch())
    plain = tiny_colorizer()
    with pytest.raises(UserError, match="hints.yaml"):
        plain.denoising_loss({**fixed_batch(), "hints": torch.zeros(8, 4, 16, 16)})


def test_hints_overlay_trains_and_colorizes(faces, tmp_path, one_thread):
    import colorize
    from training.cli import run_cli
    from models.checkpoint import load_colorizer
    from models.diffusion import DiffusionColorizer

    root = Path(__file__).resolve().parents[1]
    common = ["--config", str(root / "tests" / "tiny.yaml"), "--config", str(root / "configs" / "variants" /
              "hints.yaml"), "--trainer.logger", "false", "--data.root", str(faces), "--model.lr", "0.01",
              "--model.ema_decay", "0", "--trainer.default_root_dir", str(tmp_path / "run")]
    run_cli(DiffusionColorizer, ["fit", *common, "--trainer.max_steps", "3",
                                 "--trainer.callbacks+=pytorch_lightning.callbacks.ModelCheckpoint",
                                 f"--trainer.callbacks.dirpath={tmp_path / 'ckpt'}",
                                 "--trainer.callbacks.save_last=true"])
    ckpt = tmp_path / "ckpt" / "last.ckpt"
    assert load_colorizer(ckpt).ema.takes_hints
    face = sorted(faces.glob("*.png"))
    rgba = np.zeros((16, 16, 4), np.uint8)
    rgba[4:12, 4:12] = (255, 0, 255, 255)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "hints.png")
    args = ["--checkpoint", str(ckpt), "--sketch", str(face[0]), "--reference", str(face[1])]
    colorize.main([*args, "--out", str(tmp_path / "none")])
    colorize.main([*args, "--out", str(tmp_path / "hinted"), "--hints", str(tmp_path / "hints.png")])
    colorize.main([*args, "--out", str(tmp_path / "empty"), "--hints", str(tmp_path)])  # a folder without its file
    read = {k: np.asarray(Image.open(tmp_path / k / f"{face[0].stem}.png")) for k in ("none", "hinted", "empty")}
    assert np.array_equal(read["none"], read["empty"]) and not np.array_equal(read["none"], read["hinted"])
    colorize.main([*args, "--out", str(tmp_path / "traj"), "--hints", str(tmp_path / "hints.png"),
                   "--save-trajectory"])
    grid = np.asarray(Image.open(next((tmp_path / "traj_trajectory").glob("*.png"))))
    sketch_tile = grid[2:18, 2:18]  # the first tile: the sketch with its hints painted on
    assert (sketch_tile == (255, 0, 255)).all(axis=-1).sum() == 64
    from apps import controls_figure

    controls_figure.main([*args, "--control", "hints", "--values", "0", "4", "--hint-source", str(face[2]),
                          "--seeds", "0", "--out", str(tmp_path / "fig.png")])
    assert Image.open(tmp_path / "fig.png").size[0] > 64


def test_figure_hints_are_nested_and_coloured_from_the_source():
    from apps.controls_figure import figure_hints

    source = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    few, more = figure_hints(source, 2), figure_hints(source, 6)
    assert not figure_hints(source, 0).any()
    assert bool((more[:, 3] >= few[:, 3]).all()) and more[:, 3].sum() > few[:, 3].sum()  # the same first points
    assert float(few[:, :3].abs().sum()) > 0


def test_hints_for_a_model_without_them_is_one_line(tiny_model, tmp_path, capsys):
    import colorize

    rgba = np.zeros((16, 16, 4), np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "hints.png")
    face = sorted(tiny_model.faces.glob("*.png"))[0]
    with pytest.raises(SystemExit) as exit_info:
        colorize.main(["--checkpoint", str(tiny_model.checkpoint), "--sketch", str(face), "--reference", str(face),
                       "--out", str(tmp_path / "out"), "--hints", str(tmp_path / "hints.png")])
    assert exit_info.value.code == 2 and "without colour hints" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


pytest_plugins = ["conftest_ckpt"]
