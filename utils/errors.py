"""One clear line for bad input: what went wrong, which file, what to do; never a traceback."""
from __future__ import annotations

import functools
import sys
from typing import Callable, TypeVar

F = TypeVar("F", bound=Callable)


#: How many names a message lists before "and N more".
LISTED = 5


def listing(names: list[str], limit: int = LISTED) -> str:
    """``a, b, c and N more``: the first ``limit`` names of a list for a one-line message."""
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


class UserError(Exception):
    """An error caused by the user's input. Its message is printed as one line and the process exits non-zero."""

    exit_code = 2


class OptionError(UserError, ValueError):
    """A constructor argument its class rejects: ``option`` names the parameter, ``message`` says what it must be
    (``str(err)`` is both: "realism must be in [0, 1], got 2.0"). A command line that built the class names its own
    option instead (pretrain.py: ``--model.realism: must be in [0, 1], got 2.0``)."""

    def __init__(self, option: str, message: str):
        super().__init__(f"{option} {message}")
        self.option, self.message = option, message


class TrainingDiverged(UserError):
    """The training loss became NaN or infinite: the run stops before the bad update reaches the weights."""

    exit_code = 3


def exit_on_user_error(main: F) -> F:
    """Decorate a CLI ``main``: a :class:`UserError` becomes ``error: <message>`` on stderr and exit code 2."""

    @functools.wraps(main)
    def wrapper(*args, **kwargs):
        try:
            return main(*args, **kwargs)
        except UserError as err:
            print(f"error: {err}", file=sys.stderr)
            raise SystemExit(err.exit_code) from None

    return wrapper  # type: ignore[return-value]
