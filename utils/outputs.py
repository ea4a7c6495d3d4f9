"""Output folders a command writes: never into a file, and never into a folder that holds files unless asked."""
from __future__ import annotations

from pathlib import Path

from .errors import UserError


def check_output_folder(out: Path, overwrite: bool, what: str) -> bool:
    """Refuse an ``--out`` that is a file, or a folder that holds files unless ``overwrite``; ``what`` says what
    --overwrite then does ("replace earlier faces"). Returns whether the folder holds files (for the caller to
    remove what it replaces)."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; pass a folder")
    filled = out.is_dir() and any(out.iterdir())
    if filled and not overwrite:
        raise UserError(f"--out {out} is not empty: it holds files already; pass --overwrite to {what}, or choose "
                        "another folder")
    return filled
