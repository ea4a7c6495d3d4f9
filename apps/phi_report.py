"""The phi* ranking as a printed table and as CSV, JSON and markdown files."""
from __future__ import annotations

import csv
import json
import math
from pathlib import Path

from .phi_search import SCHEDULE_TITLES, Score, SearchResult


def _fmt(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{value:.4f}"


def _json_number(value: float) -> float | None:
    return None if math.isnan(value) else value


def markdown_table(ranking: list[Score]) -> str:
    """Rank, candidate, mean and std of R^2, images scored; notes (unscored candidates) in a last column."""
    lines = ["| rank | phi(sigma) | mean R^2 | std R^2 | images | note |", "|---:|---|---:|---:|---:|---|"]
    for i, s in enumerate(ranking, 1):
        lines.append(f"| {i} | `{s.name}` | {_fmt(s.mean)} | {_fmt(s.std)} | {s.n_valid}/{s.n_images} | {s.note} |")
    return "\n".join(lines)


def write_reports(result: SearchResult, settings: dict, out: Path) -> dict[str, Path]:
    """Write phi_ranking.csv, phi_ranking.json and phi_ranking.md into ``out``; return their paths by format."""
    paths = {fmt: out / f"phi_ranking.{fmt}" for fmt in ("csv", "json", "md")}
    with open(paths["csv"], "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["rank", "phi", "mean_r2", "std_r2", "n_valid", "n_images", "note"])
        for i, s in enumerate(result.ranking, 1):
            writer.writerow([i, s.name, repr(s.mean), repr(s.std), s.n_valid, s.n_images, s.note])

    def score_dict(s: Score) -> dict:
        return {"phi": s.name, "mean_r2": _json_number(s.mean), "std_r2": _json_number(s.std),
                "n_valid": s.n_valid, "n_images": s.n_images, "note": s.note}

    payload = {
        "settings": settings,
        "ranking": [{"rank": i, **score_dict(s)} for i, s in enumerate(result.ranking, 1)],
        "c_sweep": [{"c": c, **score_dict(s)} for c, s in result.sweep],
        "schedules": {key: {"title": SCHEDULE_TITLES[key], "r2_ssim_vs_step": score_dict(s),
                            "sigmas": result.schedule_sigmas[key].tolist()}
                      for key, s in result.schedule_scores.items()},
    }
    paths["json"].write_text(json.dumps(payload, indent=2) + "\n")

    best_c, best = result.best_c()
    md = [
        "# phi* search: linearity of SSIM degradation along each candidate's grid",
        "",
        f"Images: {settings['num_images']} from `{settings['images']}` at {settings['size']} px; {settings['steps']} "
        f"steps evenly spaced in phi over sigma in [{settings['sigma_min']:g}, {settings['sigma_max']:g}]; "
        f"seed {settings['seed']}. Score: R^2 of the least-squares line of SSIM(x0, clip(x0 + sigma n)) against "
        "phi(sigma), mean and std over images.",
        "",
        markdown_table(result.ranking),
        "",
        f"Best c of sigma/(sigma+c) over the sweep {', '.join(f'{c:g}' for c, _ in result.sweep)}: "
        f"c = {best_c:g} (mean R^2 {_fmt(best.mean)}).",
        "",
        "SSIM vs step index along the plotted sampler grids (mean R^2 over images): "
        + "; ".join(f"{SCHEDULE_TITLES[k]}: {_fmt(s.mean)}" for k, s in result.schedule_scores.items()) + ".",
        "",
    ]
    paths["md"].write_text("\n".join(md))
    return paths
