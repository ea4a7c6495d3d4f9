"""The U-Net's reference correspondence: the sketch-matched warp and the decoder cross-attention. A fresh attention
branch is the plain model, the matching finds the same lines before training, the reference reaches the output
through each path, and such models save, load and run through the CLI like any other."""
import pytest
import torch

from models.checkpoint import class_path, load_colorizer
from models.denoiser import Cond
from models.unet import UNet

TINY = dict(base_channels=16, channel_mult=(1, 2, 2), num_blocks=1, attn_heads=2)


@pytest.mark.parametrize("keys", ["reference", "sketch"])
def test_fresh_branch_leaves_the_plain_output_unchanged(keys):
    torch.manual_seed(0)
    attending = UNet(**TINY, ref_attention=(1, 2), ref_attention_mid=True, ref_keys=keys).eval()
    plain = UNet(**TINY).eval()
    missing, unexpected = plain.load_state_dict(attending.state_dict(), strict=False)
    assert not missing and unexpected and all(k.startswith(("ref_", "sketch_encoder")) for k in unexpected)
    assert any(k.startswith("sketch_encoder") for k in unexpected) == (keys == "sketch")
    for block in (attending.out[-1], plain.out[-1]):  # a zero output layer would hide any difference
        torch.nn.init.normal_(block.weight)
    plain.out[-1].weight.data.copy_(attending.out[-1].weight.data)
    x, c = torch.randn(2, 7, 16, 16), torch.rand(2)
    torch.testing.assert_close(attending(x, c), plain(x, c), rtol=0, atol=0)


@pytest.mark.parametrize("path", [dict(ref_attention=(2,), ref_attention_mid=True, ref_concat=False),
                                  dict(ref_attention=(2,), ref_attention_mid=True, ref_concat=False, ref_keys="sketch"),
                                  dict(ref_warp=1, ref_concat=False)], ids=["attention", "sketch-keys", "warp"])
def test_reference_reaches_the_output_only_through_attention_and_training_uses_it(path):
    torch.manual_seed(0)
    net = UNet(**TINY, **path)
    torch.nn.init.normal_(net.out[-1].weight, std=0.1)
    # One noisy image, sketch and noise level for all four samples: the reference is all that tells them apart.
    x, c = torch.randn(1, 7, 16, 16).repeat(4, 1, 1, 1), torch.full((4,), 0.5)
    colours = torch.rand(4, 3, 1, 1) * 2 - 1
    x[:, -3:] = colours + 0.1 * torch.randn(4, 3, 16, 16)  # each reference: one colour
    other = x.clone()
    other[:, -3:] = -x[:, -3:]  # another reference, same noisy image and sketch
    if "ref_warp" not in path:
        with torch.no_grad():
            torch.testing.assert_close(net(x, c), net(other, c), rtol=0, atol=0)  # zero projections: no path yet
    # Train the output to take the reference's colour: only the attention can learn that.
    target = colours.expand(-1, -1, 16, 16)
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(30):
        loss = (net(x, c) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
    with torch.no_grad():
        assert (net(x, c) - net(other, c)).abs().mean() > 0.1


def test_bad_configurations_are_refused():
    with pytest.raises(ValueError, match="no path"):
        UNet(**TINY, ref_concat=False)
    with pytest.raises(ValueError, match="levels"):
        UNet(**TINY, ref_attention=(3,))
    with pytest.raises(ValueError, match="ref_keys"):
        UNet(**TINY, ref_attention=(1,), ref_keys="colours")
    with pytest.raises(ValueError, match="ref_warp"):
        UNet(**TINY, ref_warp=3)


@pytest.mark.parametrize("level", [0, 1])
def test_warp_moves_the_reference_colours_onto_the_matching_lines(level):
    """An untrained warp already paints the sketch's line with the colour of the reference's line, drawn elsewhere."""
    sketch = torch.ones(1, 1, 16, 16)
    sketch[..., 2:4, :] = -1  # a dark line near the top of the sketch
    reference = torch.full((1, 3, 16, 16), 0.8)
    reference[:, 1:, 11:13, :] = -0.8  # a red line lower down on a white reference
    for seed in range(3):
        torch.manual_seed(seed)
        net = UNet(**TINY, ref_warp=level).eval()
        with torch.no_grad():
            warped = net.warped_reference(sketch, reference)
        assert warped.shape == reference.shape
        green = warped[0, 1]  # red takes green away: lower green = more of the red line
        assert green[2:4].mean() < green[6:9].mean() - 0.1


def test_sketch_keys_find_the_matching_structure_from_the_first_step():
    """With keys and queries from one encoder and one projection, a query attends more to the reference pixels
    whose lines look like its own, wherever they lie in the reference, before any training (on average over
    initialisations; separate projections for queries and keys score the line lower than flat ground)."""
    sketch = torch.ones(1, 1, 16, 16)
    sketch[..., 2:4, :] = -1  # a dark horizontal line near the top of the sketch
    reference = torch.full((1, 3, 16, 16), 0.8)
    reference[..., 11:13, :] = -0.8  # the reference draws the same line lower down
    line, flat = [], []
    for seed in range(4):
        torch.manual_seed(seed)
        net = UNet(**TINY, ref_attention=(0,), ref_concat=False, ref_keys="sketch").eval()
        attn = net.ref_attn[str(len(net.up) - 1)]  # the last decoder block, at full resolution
        with torch.no_grad():
            structure = net._structure(sketch, reference)[0]
            q, k = (attn.match(attn.match_norm(s)).flatten(2)[0].T for s in structure)
        scores = (q @ k.T)[2 * 16 + 8].reshape(16, 16)  # a query on the sketch's line, against every key
        line.append(scores[11:13].mean())
        flat.append(scores[5:8].mean())
    assert sum(line) > sum(flat) + 8


def test_checkpoint_round_trip(tmp_path):
    from models.diffusion import DiffusionColorizer

    torch.manual_seed(0)
    net = UNet(base_channels=16, channel_mult=(1, 2), num_blocks=1, attn_heads=2, ref_attention=(1,), ref_concat=False)
    model = DiffusionColorizer(net=net, steps=3, sampler="euler").eval()
    for p in model.ema.parameters():  # a "trained" EMA: every path non-zero
        torch.nn.init.normal_(p, std=0.05)
    path = tmp_path / "refattn.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "model_class": class_path(model)}, path)
    loaded = load_colorizer(path)
    assert loaded.ema.net.init_args["ref_attention"] == (1,) and not loaded.ema.net.ref_concat
    g = torch.Generator().manual_seed(1)
    sketch = torch.rand(1, 1, 16, 16, generator=g) * 2 - 1
    refs = [torch.rand(1, 3, 16, 16, generator=g) * 2 - 1 for _ in range(2)]
    with torch.no_grad():
        out = loaded.sample(Cond(sketch, refs[0]), seed=0)
        torch.testing.assert_close(out, model.sample(Cond(sketch, refs[0]), seed=0))
        assert not torch.equal(out, loaded.sample(Cond(sketch, refs[1]), seed=0))


def test_reference_augment_keeps_colours_and_breaks_alignment():
    import numpy as np

    from data.reference_aug import ReferenceAugment

    img = np.arange(16 * 16 * 3, dtype=np.uint8).reshape(16, 16, 3)
    off = ReferenceAugment()
    rng = np.random.default_rng(0)
    assert np.array_equal(off.apply(img, rng), img) and np.array_equal(off.apply(img, rng), img)
    assert rng.random() == np.random.default_rng(0).random()  # off draws nothing: other streams stay as they were
    out = ReferenceAugment(flip=1.0, patches=4).apply(img, np.random.default_rng(1))
    assert sorted(out.reshape(-1, 3).tolist()) == sorted(img.reshape(-1, 3).tolist())  # the same colours...
    assert (out != img).mean() > 0.5  # ...elsewhere
    for bad in (dict(flip=1.5), dict(patches=1)):
        with pytest.raises(ValueError):
            ReferenceAugment(**bad)


def test_refattn_overlay_trains_tests_and_colorizes(faces, tmp_path, capsys, one_thread):
    """The overlay on the tiny config (its 2-level U-Net warps at level 1 here), with decoder attention at level 1
    too: fit, test with --ckpt_path, colorize, the comparison figure."""
    from pathlib import Path

    import colorize
    from training.cli import run_cli
    from models.diffusion import DiffusionColorizer

    root = Path(__file__).resolve().parents[1]
    common = ["--config", str(root / "tests" / "tiny.yaml"), "--config", str(root / "configs" / "variants" /
              "refattn.yaml"), "--trainer.logger", "false", "--model.net.init_args.ref_attention", "[1]",
              "--model.net.init_args.ref_warp", "1",
              "--data.root", str(faces), "--trainer.default_root_dir", str(tmp_path / "run"),
              "--model.test_output_dir", str(tmp_path / "test")]
    run_cli(DiffusionColorizer, ["fit", *common, "--trainer.max_steps", "2",
                                 "--trainer.callbacks+=pytorch_lightning.callbacks.ModelCheckpoint",
                                 f"--trainer.callbacks.dirpath={tmp_path / 'ckpt'}",
                                 "--trainer.callbacks.save_last=true"])
    ckpt = tmp_path / "ckpt" / "last.ckpt"
    net = load_colorizer(ckpt).ema.net
    assert net.init_args["ref_attention"] == (1,) and net.init_args["ref_warp"] == 1
    run_cli(DiffusionColorizer, ["test", *common, "--trainer.default_root_dir", str(tmp_path / "testrun"),
                                 "--ckpt_path", str(ckpt)])
    assert len(list((tmp_path / "test" / "cross").glob("*.png"))) == 4
    face = sorted(faces.glob("*.png"))
    colorize.main(["--checkpoint", str(ckpt), "--sketch", str(face[0]), "--reference", str(face[1]),
                   "--out", str(tmp_path / "out")])
    assert (tmp_path / "out" / f"{face[0].stem}.png").is_file()
    # a noise start from the network's warp of the reference
    colorize.main(["--checkpoint", str(ckpt), "--sketch", str(face[0]), "--reference", str(face[1]),
                   "--out", str(tmp_path / "out_warp"), "--sigma-start", "1", "--init", "warp"])
    assert (tmp_path / "out_warp" / f"{face[0].stem}.png").is_file()
    # the comparison figure with the warped reference, and its one-line refusals
    from apps import cross_figure

    fig = tmp_path / "fig.png"
    args = ["--outputs", str(tmp_path / "test"), str(tmp_path / "test"), "--labels", "a", "b", "--out", str(fig)]
    cross_figure.main([*args, "--warp", str(ckpt), "--count", "3"])
    from PIL import Image

    assert Image.open(fig).size[0] > Image.open(fig).size[1]  # 7 columns, 3 rows
    cross_figure.main([*args[:-1], str(tmp_path / "recolour.png"), "--setting", "recolour", "--count", "2"])
    assert (tmp_path / "recolour.png").is_file()
    capsys.readouterr()
    for bad, says in ((args, "exists"), ([*args[:5], "--out", str(tmp_path / "g.png")], "labels"),
                      (["--outputs", str(tmp_path), "--out", str(tmp_path / "g.png")], "lacks")):
        with pytest.raises(SystemExit) as err:
            cross_figure.main(bad)
        assert err.value.code != 0 and says in capsys.readouterr().err


def test_absolute_reference_colours_reach_the_values():
    """Normalised features lose a channel's mean over the image; the colour bypass keeps it: the same features
    with two different colours attend to different values."""
    from models.correspondence import CrossAttention

    torch.manual_seed(0)
    attn = CrossAttention(8, 8, 2)
    torch.nn.init.normal_(attn.proj.weight, std=0.1)
    x, feats = torch.randn(1, 8, 4, 4), torch.randn(1, 8, 4, 4)
    dark, light = torch.full((1, 3, 4, 4), -0.8), torch.full((1, 3, 4, 4), 0.8)
    with torch.no_grad():
        assert (attn(x, feats, dark) - attn(x, feats, light)).abs().mean() > 1e-2
        torch.testing.assert_close(attn(x, feats + 5.0, dark), attn(x, feats, dark))  # the features' mean is normalised away


def test_noise_start_from_the_warp():
    """init "warp" starts a noise start from the network's own warp of the reference: the same output as handing
    that warp in as the initial image, another than starting from the reference; refused without a warp."""
    from models.diffusion import DiffusionColorizer
    from models.controls import start_image

    torch.manual_seed(0)
    make = lambda **kw: UNet(base_channels=16, channel_mult=(1, 2), num_blocks=1, attn_heads=2,  # noqa: E731
                             **kw)
    model = DiffusionColorizer(net=make(ref_warp=1, ref_concat=False), steps=4, sampler="euler", init="warp").eval()
    for p in model.ema.parameters():  # a "trained" EMA: every path non-zero
        torch.nn.init.normal_(p, std=0.05)
    g = torch.Generator().manual_seed(1)
    cond = Cond(torch.rand(1, 1, 16, 16, generator=g) * 2 - 1, torch.rand(1, 3, 16, 16, generator=g) * 2 - 1)
    with torch.no_grad():
        warp = model.ema.net.warped_reference(cond.sketch, cond.reference)
        assert not torch.allclose(warp, cond.reference, atol=0.05)
        out = model.sample(cond, seed=0, sigma_start=1.0)
        torch.testing.assert_close(out, model.sample(cond, seed=0, sigma_start=1.0, init=warp), rtol=0, atol=0)
        assert not torch.allclose(out, model.sample(cond, seed=0, sigma_start=1.0, init=cond.reference))
        torch.testing.assert_close(start_image("warp", cond.sketch, cond.reference, model.ema.net), warp)
    with pytest.raises(ValueError, match="warp"):
        DiffusionColorizer(net=make(), init="warp")
    with pytest.raises(ValueError, match="warp"):
        start_image("warp", cond.sketch, cond.reference, make())
    with pytest.raises(ValueError, match="init must be"):
        DiffusionColorizer(net=make(), init="noise")
    from apps.colorizer import INIT_KINDS  # the command line's list, kept without importing models
    from models.controls import INIT_KINDS as MODEL_INIT_KINDS

    assert INIT_KINDS == MODEL_INIT_KINDS
