"""The first hour of pretrain.py / finetune.py: a GPU configuration on a CPU machine, a misspelt choice, a value a
constructor rejects and a missing data folder are each one line on stderr and exit status 2; validate and test run
without --data.root. The CLIs run in-process (training.cli.run_cli), as the entry scripts call them."""
from pathlib import Path
from typing import get_args, get_type_hints

import pytest
import torch
from jsonargparse import Namespace

from data.datamodule import ColorizationDataModule
from models.diffusion import LOSS_WEIGHTINGS, DiffusionColorizer
from models.controls import INIT_KINDS
from models.denoiser import PREDICTIONS
from models.refiner import STRATEGIES, TrajectoryRefiner
from models.solvers import SAMPLERS
from models.ssim_guidance import GUIDANCE_TARGETS
from models.unet import REF_KEYS, RESAMPLE, UNet
from training.cli import gpu_shortage, run_cli
from training.cli_parser import error_line
from utils.xdog import CONTRAST_MODES

pytest_plugins = ["conftest_ckpt"]

ROOT = Path(__file__).resolve().parents[1]
TINY = str(ROOT / "tests" / "tiny.yaml")
CPU_OPTIONS = "--trainer.accelerator cpu --trainer.devices 1 --trainer.precision 32-true"


def error_of(model_class, args: list[str], capsys) -> str:
    """The CLI's stderr for ``args``, which must end it with exit status 2 in one ``error:`` line."""
    with pytest.raises(SystemExit) as exit_info:
        run_cli(model_class, args)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2, err[-2000:]
    assert "Traceback" not in err
    lines = [line for line in err.strip().splitlines() if line.strip() and line != "Seed set to 0"]
    assert len(lines) == 1 and lines[0].startswith("error: "), err[-2000:]
    return lines[0]


@pytest.mark.skipif(torch.cuda.is_available(), reason="the machine has a GPU")
@pytest.mark.parametrize("model_class, config, cpu_config", [
    (DiffusionColorizer, "configs/pretrain.yaml", "configs/cpu64.yaml"),
    (TrajectoryRefiner, "configs/finetune.yaml", "configs/finetune_demo.yaml"),
], ids=["pretrain", "finetune"])
def test_a_gpu_config_without_a_gpu_says_how_to_run_on_the_cpu(model_class, config, cpu_config, tmp_path, capsys):
    line = error_of(model_class, ["fit", "--config", str(ROOT / config), "--data.root", str(tmp_path),
                                  "--trainer.default_root_dir", str(tmp_path / "run")], capsys)
    assert "GPU" in line and f"--config {cpu_config}" in line and CPU_OPTIONS in line
    assert not (tmp_path / "run").exists()


def test_gpu_shortage_counts_the_devices(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert "asks for 2 GPUs" in gpu_shortage(Namespace(accelerator="gpu", devices=2), "c.yaml")
    assert "--trainer.devices 1" in gpu_shortage(Namespace(accelerator="cuda", devices=[0, 1]), "c.yaml")
    for devices in (1, "1", "auto", -1):
        assert gpu_shortage(Namespace(accelerator="gpu", devices=devices), "c.yaml") is None
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu_shortage(Namespace(accelerator="cpu", devices=4), "c.yaml") is None
    assert "--config c.yaml" in gpu_shortage(Namespace(accelerator="gpu", devices=1), "c.yaml")


def test_choice_types_are_their_registries():
    """The Literal types that jsonargparse checks and --help lists are built from the registries the code uses."""
    hints = {**get_type_hints(DiffusionColorizer.__init__), **get_type_hints(TrajectoryRefiner.__init__)}
    assert get_args(hints["sampler"]) == tuple(SAMPLERS)
    assert get_args(hints["prediction"]) == PREDICTIONS
    assert get_args(hints["loss_weighting"]) == LOSS_WEIGHTINGS
    assert get_args(hints["guidance_target"]) == GUIDANCE_TARGETS
    assert get_args(hints["init"]) == INIT_KINDS
    assert get_args(hints["strategy"]) == STRATEGIES
    unet = get_type_hints(UNet.__init__)
    assert get_args(unet["resample"]) == RESAMPLE and get_args(unet["ref_keys"]) == REF_KEYS
    assert get_args(get_type_hints(ColorizationDataModule.__init__)["xdog_contrast"]) == CONTRAST_MODES


@pytest.mark.parametrize("option, value, choices", [
    ("--model.sampler", "eulr", tuple(SAMPLERS)),
    ("--model.prediction", "v", PREDICTIONS),
    ("--model.loss_weighting", "snr", LOSS_WEIGHTINGS),
    ("--model.init", "noise", INIT_KINDS),
    ("--model.guidance_target", "edges", GUIDANCE_TARGETS),
    ("--data.xdog_contrast", "equalize", CONTRAST_MODES),
    ("--model.net.init_args.resample", "bilinear", RESAMPLE),
])
def test_an_unknown_choice_is_one_line_with_the_choices(option, value, choices, tmp_path, capsys):
    line = error_of(DiffusionColorizer, ["fit", "--config", TINY, "--data.root", str(tmp_path), option, value],
                    capsys)
    assert line.startswith(f"error: --{option.replace('.init_args', '')[2:]}: ") and value in line
    assert all(repr(choice) in line for choice in choices), line


def test_an_unknown_finetuning_strategy_is_one_line(tmp_path, capsys):
    line = error_of(TrajectoryRefiner, ["fit", "--config", TINY, "--data.root", str(tmp_path),
                                        "--model.strategy", "lpips"], capsys)
    assert line.startswith("error: --model.strategy: ") and all(repr(s) in line for s in STRATEGIES)


@pytest.mark.parametrize("model_class, option, value, says", [
    (DiffusionColorizer, "--model.realism", "2", "error: --model.realism: must be in [0, 1], got 2.0"),
    (DiffusionColorizer, "--model.sigma_start", "0", "error: --model.sigma_start: must be positive"),
    (DiffusionColorizer, "--model.net.init_args.ref_warp", "5", "error: --model.net.init_args.ref_warp: must be a "
                                                                "level in 0..1, got 5"),
    (DiffusionColorizer, "--model.schedule.init_args.sigma_min", "-1", "error: --model.schedule.init_args.sigma_min: "
                                                                       "must be > 0"),
    (DiffusionColorizer, "--model.sampler", "cold", "error: --model.sampler: 'cold' with PhiSchedule"),
    (TrajectoryRefiner, "--model.refine_steps", "0", "error: --model.refine_steps: must be >= 1, got 0"),
    (DiffusionColorizer, "--model.rho", "-1", "error: --model.rho: must be positive, got -1.0"),
], ids=["realism", "sigma_start", "ref_warp", "sigma_min", "cold-sampler", "refine_steps", "rho"])
def test_a_value_the_constructor_rejects_is_one_line_naming_the_option(model_class, option, value, says, tmp_path,
                                                                        capsys):
    args = ["fit", "--config", TINY, "--data.root", str(tmp_path), "--trainer.default_root_dir", str(tmp_path / "r")]
    if option.startswith("--model.schedule"):
        args += ["--model.schedule", "models.schedules.PhiSchedule"]
    assert error_of(model_class, args + [option, value], capsys).startswith(says)


def test_error_line_joins_the_keys_of_a_nested_error():
    inner = ValueError("Expected a typing.Literal['conv', 'pool']. Got value: foo")
    key = TypeError('Parser key "resample":\n  ' + str(inner))
    key.__cause__ = inner
    outer = TypeError('Parser key "model.net":\n  Does not validate against any of the Union subtypes\n ...')
    outer.__cause__ = key
    assert error_line(str(outer), outer) == "--model.net.resample: " + str(inner)
    assert error_line("unrecognized arguments: --model.x 1") == "unrecognized arguments: --model.x 1"


def test_a_config_naming_a_moved_module_says_its_new_name(tmp_path, capsys):
    """A run's config.yaml from before the Lightning wiring left models/ names models.loss_watch.LossWatch."""
    config = tmp_path / "old.yaml"
    config.write_text("trainer:\n  callbacks:\n    - class_path: models.loss_watch.LossWatch\n")
    line = error_of(DiffusionColorizer, ["fit", "--config", TINY, "--config", str(config), "--data.root",
                                         str(tmp_path), "--print_config"], capsys)
    assert line.startswith("error: --trainer.callbacks: ") and "models.loss_watch is now training.loss_watch" in line


def test_fit_without_data_root_is_one_line(capsys, tmp_path):
    line = error_of(DiffusionColorizer, ["fit", "--config", TINY, "--trainer.default_root_dir", str(tmp_path)],
                    capsys)
    assert "--data.root" in line and not any(tmp_path.iterdir())


@pytest.mark.parametrize("model_class", [DiffusionColorizer, TrajectoryRefiner], ids=["pretrain", "finetune"])
def test_test_runs_without_data_root(model_class, tiny_model, tmp_path, capsys, one_thread):
    """``test --ckpt_path X --data.test_root TEST``: no training folder needed (the tiny checkpoint, 1 batch)."""
    out = tmp_path / "outputs"
    run_cli(model_class, ["test", "--config", TINY, "--ckpt_path", str(tiny_model.checkpoint), "--data.test_root",
                          str(tiny_model.faces), "--trainer.limit_test_batches", "1", "--trainer.default_root_dir",
                          str(tmp_path / "run"), "--model.test_output_dir", str(out)])
    assert len(list((out / "same").glob("*.png"))) == 4  # one batch of 4 (tiny.yaml)
    line = error_of(model_class, ["test", "--config", TINY, "--ckpt_path", str(tiny_model.checkpoint),
                                  "--trainer.default_root_dir", str(tmp_path / "run2")], capsys)
    assert "--data.root" in line and "--data.test_root" in line
