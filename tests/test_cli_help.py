"""``pretrain.py fit --help`` fits a few screens: one or two lines per option, the project's networks only under
--model.net, the choices of every choice option, an example on top, and a --config's values as the defaults."""
import re

import pytest

import finetune
import pretrain
from training.cli import run_cli
from training.cli_help import first_sentence
from models.checkpoint import NETWORKS
from models.diffusion import DiffusionColorizer
from models.refiner import TrajectoryRefiner
from models.solvers import SAMPLERS

MOST_LINES = 300


def help_text(model_class, args: list[str], description: str, capsys, monkeypatch) -> str:
    monkeypatch.setenv("COLUMNS", "80")  # argparse wraps at the terminal's width
    with pytest.raises(SystemExit) as exit_info:
        run_cli(model_class, args, description=description)
    assert exit_info.value.code == 0
    return capsys.readouterr().out


def option_help(text: str, option: str) -> str:
    """The help of ``option``: its line and the indented lines below it."""
    match = re.search(rf"^  {re.escape(option)}\b.*\n(?:      .*\n)*", text, re.MULTILINE)
    assert match, option
    return match[0]


def test_fit_help_is_short_and_lists_the_choices(capsys, monkeypatch):
    text = help_text(DiffusionColorizer, ["fit", "--help"], pretrain.__doc__, capsys, monkeypatch)
    assert len(text.splitlines()) <= MOST_LINES
    assert "python pretrain.py fit --config configs/cpu64.yaml --data.root DIR" in text  # the example on top
    assert option_help(text, "--model.sampler").startswith(f"  --model.sampler {{{','.join(SAMPLERS)}}}")
    net = option_help(text, "--model.net")
    assert all(name.rpartition(".")[2] in net for name in NETWORKS) and "Conv2d" not in text
    assert "(default: 18)" in option_help(text, "--model.steps")
    assert max(map(len, text.splitlines())) <= 100
    assert not undescribed(text, ("--model.", "--data."))


def undescribed(text: str, prefixes: tuple[str, ...]) -> list[str]:
    """The options under ``prefixes`` whose help has no words besides their choices and default."""
    found = []
    for match in re.finditer(r"^  (--\S+)(.*)\n((?:      .*\n)*)", text, re.MULTILINE):
        words = re.sub(r"\{[^}]*\}|\(default: [^)]*\)\s*$", "", f"{match[2]} {match[3]}".strip())
        if match[1].startswith(prefixes) and len(words.split()) < 2:
            found.append(match[1])
    return found


def test_every_network_and_schedule_option_is_described(capsys, monkeypatch):
    for cls in ("UNet", "PhiSchedule", "EDMSchedule", "VPSchedule"):
        option = "--model.net.help" if cls == "UNet" else "--model.schedule.help"
        text = help_text(DiffusionColorizer, ["fit", option, cls], pretrain.__doc__, capsys, monkeypatch)
        assert text.count("\n  --") >= 3 and not undescribed(text, ("--model.",)), cls


def test_help_after_a_config_shows_its_values(capsys, monkeypatch):
    text = help_text(DiffusionColorizer, ["fit", "--config", "configs/cpu64.yaml", "--help"], pretrain.__doc__, capsys,
                     monkeypatch)
    assert "(default: 0.003)" in option_help(text, "--model.lr")  # the code's default is 0.0001
    assert "(default: cpu)" in option_help(text, "--trainer.accelerator")
    assert "(default: 64)" in option_help(text, "--data.size")


def test_finetune_help_says_where_the_network_comes_from(capsys, monkeypatch):
    text = help_text(TrajectoryRefiner, ["fit", "--help"], finetune.__doc__, capsys, monkeypatch)
    assert "init_checkpoint's" in option_help(text, "--model.net")
    assert all(s in option_help(text, "--model.strategy") for s in ("mse", "clip", "lpips-vgg"))


def test_first_sentence_drops_markup_and_keeps_abbreviations():
    assert first_sentence("the sampler (:data:`models.solvers.SAMPLERS`, e.g. ``heun``).\n  More text.") == \
        "the sampler (models.solvers.SAMPLERS, e.g. heun)."
