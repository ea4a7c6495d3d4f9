"""Result files and tables of the evaluation scripts.

Each run of ``evaluate_SSIM_PSNR.py`` / ``evaluate_FID.py`` can write a JSON file with a ``script`` field. The paper's
comparison table (PSNR / MS-SSIM / FID, each "same / cross") is assembled from such files: the method is the name of
the folder above the generated-image folder and the setting is that folder's own name, so ``results/ours/same`` and
``results/ours/cross`` make the row "ours".
"""
from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable

from .errors import UserError

PAIRS_SCRIPT = "evaluate_SSIM_PSNR"
FID_SCRIPT = "evaluate_FID"
SETTING_ORDER = ("same", "cross")
MISSING = "–"


def text_table(rows: list[list[str]]) -> str:
    """Rows as left-aligned columns separated by two spaces (the first row is the header)."""
    widths = [max(len(row[i]) for row in rows if i < len(row)) for i in range(max(map(len, rows)))]
    return "\n".join("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip() for row in rows)


def format_number(value: float | None, digits: int) -> str:
    if value is None:
        return MISSING
    return f"{value:.{digits}f}" if math.isfinite(value) else str(value)


def write_json(path: str | Path, result: dict[str, Any]) -> None:
    """Write ``result``; infinite PSNR is written as ``Infinity`` (read back by Python's json)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")


def _read(path: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise UserError(f"{path}: not a readable JSON file ({err})") from None
    return data if isinstance(data, dict) and data.get("script") in (PAIRS_SCRIPT, FID_SCRIPT) else None


def load_results(paths: list[str | Path]) -> list[dict[str, Any]]:
    """Results written by the evaluation scripts: the JSON files given, and those found under the folders given."""
    results = []
    for path in map(Path, paths):
        if path.is_dir():
            results += [r for r in map(_read, sorted(path.rglob("*.json"))) if r is not None]
        elif path.is_file():
            result = _read(path)
            if result is None:
                raise UserError(f"{path} was not written by {PAIRS_SCRIPT}.py or {FID_SCRIPT}.py (--json)")
            results.append(result)
        else:
            raise UserError(f"{path} does not exist; pass JSON files written with --json, or folders holding them")
    if not results:
        raise UserError(f"no result files of {PAIRS_SCRIPT}.py / {FID_SCRIPT}.py under {', '.join(map(str, paths))}")
    return results


def _ms_ssim(result: dict) -> str:
    entry = result["metrics"]["ms_ssim"]
    return "n/a" if entry.get("unavailable") else format_number(entry["mean"], 4)


# column title, script that measures it, cell text from that script's result
COLUMNS: list[tuple[str, str, Callable[[dict], str]]] = [
    ("PSNR ↑", PAIRS_SCRIPT, lambda r: format_number(r["metrics"]["psnr"]["mean"], 2)),
    ("MS-SSIM ↑", PAIRS_SCRIPT, _ms_ssim),
    ("FID ↓", FID_SCRIPT, lambda r: format_number(r["metrics"]["fid"], 2)),
    ("SSIM ↑", PAIRS_SCRIPT, lambda r: format_number(r["metrics"]["ssim"]["mean"], 4)),
    ("KID ↓", FID_SCRIPT, lambda r: format_number(r["metrics"]["kid_mean"], 4)),
]


def _index(results: list[dict]) -> dict[tuple[str, str, str], dict]:
    """(method, setting, script) -> result; two results for one key are an error."""
    index: dict[tuple[str, str, str], dict] = {}
    for result in results:
        fake = Path(result["fake"])
        key = (fake.parent.name or str(fake.parent), fake.name, result["script"])
        if key in index:
            raise UserError(f"two {key[2]} results for {key[0]}/{key[1]} ({fake}); pass only one of them")
        index[key] = result
    return index


def _footnotes(results: list[dict]) -> list[str]:
    notes = sorted({r["metrics"]["ms_ssim"]["unavailable"] for r in results if r["script"] == PAIRS_SCRIPT
                    and r["metrics"]["ms_ssim"].get("unavailable")})
    notes = [f"MS-SSIM n/a: {note}." for note in notes]
    notes += sorted({f"{warning}." for r in results if r["script"] == FID_SCRIPT for warning in r.get("warnings", [])})
    notes.append("Real images: " + ", ".join(sorted({str(r["real"]) for r in results})) + ".")
    return notes


def paper_table(results: list[dict[str, Any]]) -> str:
    """Markdown table in the paper's layout (plus SSIM and KID), one row per method, "same / cross" in each cell."""
    index = _index(results)
    methods = sorted({method for method, _, _ in index})
    found = {setting for _, setting, _ in index}
    settings = [s for s in SETTING_ORDER if s in found] + sorted(found - set(SETTING_ORDER))
    label = " / ".join(s.capitalize() for s in settings)
    lines = ["| Method | " + " | ".join(f"{title} ({label})" for title, _, _ in COLUMNS) + " |"]
    lines.append("|" + "---|" * (len(COLUMNS) + 1))
    for method in methods:
        cells = []
        for _, script, cell in COLUMNS:
            values = [index.get((method, setting, script)) for setting in settings]
            cells.append(" / ".join(cell(v) if v is not None else MISSING for v in values))
        lines.append(f"| {method} | " + " | ".join(cells) + " |")
    return "\n".join(lines + [""] + [f"- {note}" for note in _footnotes(results)])
