"""The parser of pretrain.py and finetune.py: a parse error is one line, and ``--help`` is compact
(:mod:`training.cli_help`).

jsonargparse prints the subcommand's whole usage first (some 100 lines) and, for a nested option, a tree of every
alternative it tried. Its exceptions are chained from the outermost key to the innermost reason, so the line is the
keys on the way (``Parser key "model.net"`` then ``"resample"``) and the innermost exception's message.
"""
from __future__ import annotations

import re
import sys
from typing import NoReturn

from pytorch_lightning.cli import LightningArgumentParser

from .cli_help import CompactHelpFormatter, HelpWithGivenValues

_KEY = re.compile(r'Parser key "([^"]+)":')  # how jsonargparse heads the error of one option
#: Modules a config may name that moved (the Lightning wiring out of models/, names that do not collide).
MOVED = {"models.throughput": "training.throughput", "models.loss_watch": "training.loss_watch",
         "models.colorizer": "models.diffusion", "models.samplers": "models.solvers", "data.sampler": "data.stream"}


def error_line(message: str, ex: BaseException | None = None) -> str:
    """``--model.net.resample: Expected a typing.Literal['conv', 'pool']. Got value: foo`` from jsonargparse's
    ``message`` and the exception it came from (None: the message alone, on one line)."""
    keys, reason, seen = [], message, set()
    while ex is not None and id(ex) not in seen:
        seen.add(id(ex))
        text = str(ex).strip()
        key = _KEY.match(text)
        if key and key[1] not in keys[-1:]:
            keys.append(key[1])
        reason = text
        ex = ex.__cause__ or ex.__context__
    reason = " ".join(_KEY.sub("", reason).split())
    moved = [f"{old} is now {new}" for old, new in MOVED.items() if f"'{old}'" in reason or f"{old}." in reason]
    if moved:  # a config written before the move: say what to write instead
        reason = f"{reason}; {', '.join(moved)}: edit the class_path in your config"
    return f"--{'.'.join(keys)}: {reason}" if keys else reason


class OneLineErrorParser(LightningArgumentParser):
    """LightningCLI's parser, whose errors are ``error: <one line> (see <prog> --help)`` and exit status 2."""

    def __init__(self, *args, **kwargs):
        kwargs.setdefault("formatter_class", CompactHelpFormatter)
        super().__init__(*args, add_help=False, **kwargs)
        self.add_argument("-h", "--help", action=HelpWithGivenValues, help="Show this help message and exit.")

    def error(self, message: str, ex: Exception | None = None) -> NoReturn:
        if not self.exit_on_error:  # a nested parse: jsonargparse catches the error and tries the next alternative
            super().error(message, ex)
        prog = self.prog.replace(" [options]", "")
        print(f"error: {error_line(message, ex)} (see {prog} --help)", file=sys.stderr)
        raise SystemExit(2)
