"""``--help`` of pretrain.py and finetune.py in one or two lines per option.

jsonargparse gives every option its whole docstring paragraph, its type and every importable subclass (Lightning's
Trainer alone filled 360 lines of ``fit --help``, ``nn.Module`` 700). Here an option is its flags, the first sentence
of its description (reST markup removed) and its default, on one line when they fit and otherwise on two; a class
option names its known subclasses when there are a few. The ``--X.help CLASS`` entry of every class option is left
out: the parser's description says once that ``--model.net.help UNet`` shows a class's own options.
"""
from __future__ import annotations

import argparse
import re
import textwrap
from contextvars import ContextVar

from jsonargparse import ActionConfigFile, DefaultHelpFormatter

#: The most known subclasses a class option's help names (the project's schedules are 5; Lightning's 27 callbacks
#: are left to ``--trainer.callbacks.help NAME``).
SUBCLASSES_LISTED = 5
#: The values parsed before ``--help`` (a ``--config``'s), which the help shows as the defaults.
_GIVEN: ContextVar = ContextVar("given_values", default=None)
_NOTES = "\x1f"  # separates an option's description from its notes (default) in the help template
_ROLE = re.compile(r":\w+:`([^`]+)`")
_SENTENCE_END = re.compile(r"(?<=[\w)\]`'\"]\.)\s+(?=[A-Z])")


def first_sentence(text: str) -> str:
    """The first sentence of a help text, on one line, without reST markup (``x``, :class:`x`)."""
    text = _ROLE.sub(r"\1", " ".join(text.split())).replace("``", "")
    return _SENTENCE_END.split(text, maxsplit=1)[0]


class HelpWithGivenValues(argparse._HelpAction):
    """``-h, --help``: the help, whose defaults are the values given before it (``fit --config cpu64.yaml --help``
    shows that config's; jsonargparse alone shows the code's)."""

    def __call__(self, parser, namespace, values, option_string=None):
        token = _GIVEN.set(namespace)
        try:
            parser.print_help()
        finally:
            _GIVEN.reset(token)
        parser.exit()


class CompactHelpFormatter(DefaultHelpFormatter):
    """``--model.lr  AdamW's peak learning rate. (default: 0.0001)``, or when that is too long the flags and default,
    then the description indented below; the usage is one line and the parser's description keeps its own lines
    (the examples)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if not action.option_strings or isinstance(action, (ActionConfigFile, argparse._HelpAction)):
            return super()._get_help_string(action)
        text = first_sentence(action.help or "")
        known = action.extra_help().partition("known subclasses: ")[2] if hasattr(action, "extra_help") else ""
        names = [path.rpartition(".")[2] for path in known.split(", ")] if known else []
        if 0 < len(names) <= SUBCLASSES_LISTED:
            text += f" Known subclasses: {', '.join(names)}."
        notes = ["required"] if action.required else []
        if action.default is not argparse.SUPPRESS:
            notes.append("default: %(default)s")
        return text + _NOTES + ", ".join(notes)

    def _expand_help(self, action: argparse.Action) -> str:
        given = _GIVEN.get()
        if given is None or action.default is argparse.SUPPRESS or action.dest not in given:
            return super()._expand_help(action)
        value = given[action.dest]
        if isinstance(value, list):  # callbacks: their class_path and init_args, as the config writes them
            value = [item.as_dict() if hasattr(item, "as_dict") else item for item in value]
        default, action.default = action.default, value
        try:
            return super()._expand_help(action)
        finally:
            action.default = default

    def _format_action_invocation(self, action: argparse.Action) -> str:
        if action.option_strings and action.nargs != 0 and action.choices is None and action.metavar is None:
            return ", ".join(action.option_strings)  # not "--model.steps STEPS": the default shows what it takes
        return super()._format_action_invocation(action)

    def _format_action(self, action: argparse.Action) -> str:
        if not action.option_strings or action.help == argparse.SUPPRESS:
            return super()._format_action(action)
        if action.option_strings[0].endswith(".help"):  # --model.net.help CLASS: said once, in the description
            return ""
        text, _, notes = self._expand_help(action).partition(_NOTES)
        notes = f"({notes})" if notes else ""
        indent = " " * self._current_indent
        head = indent + self._format_action_invocation(action)
        if len(head) + len(text) + len(notes) + 3 <= self._width:  # all on one line
            return f"{head}  {text} {notes}".rstrip() + "\n"
        if notes and len(head) + len(notes) + 2 <= self._width:  # the default next to the option
            head, notes = f"{head}  {notes}", ""
        body = textwrap.fill(f"{text} {notes}".strip(), self._width, initial_indent=indent + "    ",
                             subsequent_indent=indent + "    ")
        return f"{head}\n{body}\n" if body else f"{head}\n"

    def _format_usage(self, usage, actions, groups, prefix) -> str:
        full = super()._format_usage(usage, actions, groups, prefix)
        if full.count("\n") <= 3:
            return full
        return f"{prefix or 'usage: '}{self._prog} [--config FILE] [--print_config] [--OPTION VALUE ...]\n\n"

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "".join(indent + line for line in text.splitlines(keepends=True))
