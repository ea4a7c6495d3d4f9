"""A checkpoint is data: crafted files that name classes outside the registry are refused in one line, before
anything is imported or run, by every entry point that reads a checkpoint."""
from pathlib import Path

import pytest
import torch

from models.checkpoint import NETWORKS, SCHEDULES, load_colorizer, read_checkpoint
from models.diffusion import DiffusionColorizer
from models.refiner import TrajectoryRefiner
from training.cli import run_cli
from utils.errors import UserError

pytest_plugins = ["conftest_ckpt"]

ROOT = Path(__file__).resolve().parents[1]


def crafted(tiny_model, tmp_path: Path, where: str, marker: Path) -> Path:
    """The tiny checkpoint with one class name replaced by a command that would create ``marker``."""
    ckpt = torch.load(tiny_model.checkpoint, weights_only=True)
    evil = {"class_path": "subprocess.Popen", "init_args": {"args": ["sh", "-c", f"touch {marker}"]}}
    if where == "model_class":
        ckpt["model_class"] = "os.system"
    else:
        ckpt["hyper_parameters"][where] = evil
    path = tmp_path / f"crafted_{where}.ckpt"
    torch.save(ckpt, path)  # plain dicts, lists and strings: the weights-only unpickler accepts it
    return path


def assert_one_line(stderr: str, marker: Path) -> None:
    lines = stderr.strip().splitlines()
    assert "Traceback" not in stderr, stderr[-2000:]
    assert lines and lines[-1].startswith("error:") and "refused" in lines[-1], stderr[-2000:]
    assert not marker.exists()


def test_colorize_process_refuses_a_crafted_checkpoint(tiny_model, tmp_path, python_subprocess):
    marker, face = tmp_path / "pwned", sorted(tiny_model.faces.glob("*.png"))[0]
    path = crafted(tiny_model, tmp_path, "net", marker)
    result = python_subprocess(ROOT / "colorize.py", "--checkpoint", path, "--sketch", face, "--reference", face,
                               "--out", tmp_path / "out")
    assert result.returncode == 2
    assert_one_line(result.stderr, marker)
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("where", ["net", "schedule", "model_class"])
def test_every_entry_point_refuses_a_crafted_checkpoint(tiny_model, tmp_path, capsys, one_thread, where):
    import colorize

    marker, face = tmp_path / "pwned", sorted(tiny_model.faces.glob("*.png"))[0]
    path = crafted(tiny_model, tmp_path, where, marker)
    common = ["--config", str(ROOT / "tests" / "tiny.yaml"), "--data.root", str(tiny_model.faces),
              "--trainer.default_root_dir", str(tmp_path / "run")]
    runs = {
        "colorize.py": lambda: colorize.main(["--checkpoint", str(path), "--sketch", str(face), "--reference",
                                              str(face), "--out", str(tmp_path / "out")]),
        "pretrain.py test": lambda: run_cli(DiffusionColorizer, ["test", *common, "--ckpt_path", str(path)]),
        "pretrain.py fit --ckpt_path": lambda: run_cli(DiffusionColorizer, ["fit", *common, "--ckpt_path", str(path)]),
        "finetune.py fit": lambda: run_cli(TrajectoryRefiner, ["fit", *common, "--model.init_checkpoint", str(path)]),
    }
    for name, run in runs.items():
        with pytest.raises(SystemExit) as exit_info:
            run()
        assert exit_info.value.code == 2, name
        assert_one_line(capsys.readouterr().err, marker)
    assert not (tmp_path / "out").exists()


def test_refusal_happens_before_import(tiny_model, tmp_path):
    ckpt = torch.load(tiny_model.checkpoint, weights_only=True)
    ckpt["hyper_parameters"]["net"] = {"class_path": "no_such_package_xyz.Net", "init_args": {}}
    torch.save(ckpt, tmp_path / "unknown.ckpt")
    with pytest.raises(UserError, match="refused network 'no_such_package_xyz.Net'"):
        read_checkpoint(tmp_path / "unknown.ckpt")  # an import would have raised ModuleNotFoundError instead


def test_trusted_class_is_allowed_only_explicitly(tiny_model, tmp_path):
    ckpt = torch.load(tiny_model.checkpoint, weights_only=True)
    ckpt["hyper_parameters"]["net"]["class_path"] = "custom_net.MyUNet"
    path = tmp_path / "custom.ckpt"
    torch.save(ckpt, path)
    with pytest.raises(UserError, match="refused network"):
        load_colorizer(path)
    model = load_colorizer(path, trusted=["custom_net.MyUNet"])
    assert type(model.ema.net).__name__ == "MyUNet"


def test_unknown_constructor_arguments_are_one_line(tiny_model, tmp_path):
    ckpt = torch.load(tiny_model.checkpoint, weights_only=True)
    ckpt["hyper_parameters"]["schedule"]["init_args"]["evil"] = 1
    torch.save(ckpt, tmp_path / "args.ckpt")
    with pytest.raises(UserError, match="takes no argument.*'evil'"):
        load_colorizer(tmp_path / "args.ckpt")
    ckpt = torch.load(tiny_model.checkpoint, weights_only=True)
    ckpt["hyper_parameters"]["surprise"] = "x"
    torch.save(ckpt, tmp_path / "hparams.ckpt")
    with pytest.raises(UserError, match="'surprise'"):
        load_colorizer(tmp_path / "hparams.ckpt")


def test_lightning_load_from_checkpoint_is_the_safe_loader(tiny_model, tmp_path):
    from models.diffusion import DiffusionColorizer

    marker = tmp_path / "pwned"
    with pytest.raises(UserError, match="refused"):
        DiffusionColorizer.load_from_checkpoint(crafted(tiny_model, tmp_path, "net", marker))
    assert not marker.exists()
    assert isinstance(DiffusionColorizer.load_from_checkpoint(tiny_model.checkpoint), DiffusionColorizer)


def test_registry_holds_the_project_classes_only():
    assert set(NETWORKS) == {"models.unet.UNet"}
    assert all(name.startswith(("models.schedules.", "models.cold.")) for name in SCHEDULES)
    assert all(f"{cls.__module__}.{cls.__qualname__}" == name for name, cls in SCHEDULES.items())


def test_checkpoints_written_before_the_layer_change_still_load(tiny_model, tmp_path):
    """Older checkpoints name the same classes; their data options say xdog_phi and record no XDoG contrast (they
    were trained on the paper's XDoG, which colorize.py then keeps)."""
    from apps.colorizer import checkpoint_xdog

    ckpt = torch.load(tiny_model.checkpoint, weights_only=True)
    data = ckpt["datamodule_hyper_parameters"]
    data["xdog_phi"] = data.pop("xdog_ramp")
    del data["xdog_contrast"]
    assert ckpt["model_class"] == "models.diffusion.DiffusionColorizer"
    assert ckpt["hyper_parameters"]["net"]["class_path"] == "models.unet.UNet"
    path = tmp_path / "old.ckpt"
    torch.save(ckpt, path)
    loaded = read_checkpoint(path)
    assert isinstance(load_colorizer(path), DiffusionColorizer)
    params = checkpoint_xdog(loaded.datamodule_hparams)
    assert params.contrast == "none" and params.ramp == data["xdog_phi"]


def test_a_checkpoint_of_the_previous_module_layout_loads_and_samples_the_same(tiny_model, tmp_path):
    """Before the LightningModule's module was models.diffusion it was models.colorizer, the name checkpoints
    written then carry: such a file (made here from the old name) rebuilds the same model, whose samples are
    identical to the bit."""
    from apps.colorizer import Colorizer

    ckpt = torch.load(tiny_model.checkpoint, weights_only=True)
    assert ckpt["model_class"] == "models.diffusion.DiffusionColorizer"
    ckpt["model_class"] = "models.colorizer.DiffusionColorizer"
    old = tmp_path / "previous_layout.ckpt"
    torch.save(ckpt, old)
    new_model, old_model = load_colorizer(tiny_model.checkpoint), load_colorizer(old)
    assert type(old_model) is DiffusionColorizer
    face = sorted(tiny_model.faces.glob("*.png"))[0]
    images = [Colorizer.from_checkpoint(path, device="cpu", progress=False).colorize(face, face, seed=3)
              for path in (tiny_model.checkpoint, old)]
    assert images[0].shape[2] == 3 and (images[0] == images[1]).all()
    for name, value in new_model.state_dict().items():
        assert torch.equal(value, old_model.state_dict()[name]), name


@pytest.mark.parametrize("option", [["--model.prediction", "x0"],
                                    ["--model.schedule", "models.schedules.EDMSchedule"],
                                    ["--model.net.init_args.base_channels", "8"]])
def test_cli_refuses_a_config_that_gives_the_weights_another_meaning(tiny_model, tmp_path, capsys, one_thread, option):
    """The tiny checkpoint was trained with EDM preconditioning, the phi schedule and 16 base channels: testing it
    under another preconditioning or schedule would load the same weights silently and sample noise."""
    common = ["--config", str(ROOT / "tests" / "tiny.yaml"), "--data.root", str(tiny_model.faces),
              "--trainer.default_root_dir", str(tmp_path / "run"), "--ckpt_path", str(tiny_model.checkpoint)]
    with pytest.raises(SystemExit) as exit_info:
        run_cli(DiffusionColorizer, ["test", *common, *option])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("error:") and "differs from the checkpoint's" in err
    assert option[0].split(".")[1] in err  # names the option (prediction, schedule, net)
    assert not (tmp_path / "run").exists()


def test_model_mismatches_compares_only_what_both_sides_set():
    from jsonargparse import Namespace

    from training.cli import model_mismatches

    saved = {"prediction": "edm", "sigma_data": 0.5, "steps": 6,
             "net": {"class_path": "models.unet.UNet", "init_args": {"channel_mult": (1, 2), "dropout": 0.0}}}
    config = Namespace(prediction="edm", steps=50, net=Namespace(class_path="models.unet.UNet",
                                                                 init_args=Namespace(channel_mult=[1, 2])))
    assert model_mismatches(config, saved) == []  # steps is a sampling option; tuples equal lists
    config.net.init_args.channel_mult = [1, 2, 2]
    config.sigma_data = 1.0
    assert model_mismatches(config, saved) == ["net.channel_mult: config [1, 2, 2], checkpoint [1, 2]",
                                               "sigma_data: config 1.0, checkpoint 0.5"]
