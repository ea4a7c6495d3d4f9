"""Colorize sketch files with a trained checkpoint into output files: the logic behind ``colorize.py``.

The steps, in the order :func:`colorize` runs them (everything that can be checked cheaply is checked before the
checkpoint is loaded or a single image is sampled):

1. :func:`plan_jobs` pairs every sketch with its reference and its output file. A sketch folder is scanned
   recursively; an image's *name* is its path relative to the folder without the extension, and its output is
   ``OUT/<name>.png``; with one sketch file, ``out`` may instead be the output file itself (``FILE.png``). One
   reference file, or a set of several (a character sheet), serves every sketch; a reference folder is paired with
   the sketch folder by name (missing names are one error listing them), and a sub-folder ``<name>/`` of it gives
   that sketch a set of references (every image in it). With several ``seeds`` (:func:`parse_seeds`) every sketch
   gets one output per seed, ``<name>_seed<S>.png`` (``FILE_seed<S>.png``).
2. :func:`check_outputs` refuses to replace existing files unless ``overwrite`` (one line listing them).
3. :func:`check_readable` opens the header of every input file (one line listing the unreadable ones).
4. :meth:`apps.colorizer.Colorizer.from_checkpoint` loads the checkpoint once and resolves the sampling settings.
5. Per seed and batch, the colorizer prepares the inputs and samples them; each output is saved as PNG at its
   sketch's size. ``save_trajectory`` also writes, per image, a grid of the sampler's states and x0 predictions along
   the steps (with a noise start: the steps actually sampled, and the sketch the model saw).

Determinism: the noise of batch ``j`` under seed ``s`` is drawn from a generator seeded with ``(s, j)``, so the same
inputs, seed, batch size, device and software give byte-identical files, and a seed of ``seeds`` gives the files a run
with that single ``seed`` gives. Different batch sizes give different noise per image.
"""
from __future__ import annotations

import sys
from collections import Counter
from dataclasses import dataclass
from itertools import groupby
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np
from PIL import Image
from tqdm import tqdm

from data.folder import ImageEntry, pair_by_name, scan_folder
from utils.errors import UserError, listing
from utils.images import IMAGE_EXTENSIONS, load_rgb

from .colorize_inputs import TrajectoryRecorder, hints_file, show_hints, trajectory_grid, trajectory_steps
from .colorizer import Batch, Colorizer, ColorizeOptions, check_options, header_problem, is_image_file

#: The most samples per sketch ``--seeds`` may ask for.
MAX_SEEDS = 1000


# -- planning ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One sketch to colorize: its name, input files and output files."""

    name: str
    sketch: Path
    references: tuple[Path, ...]  # one, or a set the model matches all at once
    output: Path
    trajectory: Path | None = None
    seed: int | None = None  # of --seeds (None: the run's --seed)


def parse_seeds(spec: str) -> tuple[int, ...]:
    """``--seeds``: comma-separated seeds and ranges, "7", "0-3", "0,2,5", "0-3,7" (in that order)."""
    seeds: list[int] = []
    for item in spec.split(","):
        low, dash, high = item.strip().partition("-")
        if not low.isdigit() or (dash and not high.isdigit()):
            raise UserError(f"--seeds {spec}: expected seeds like 7, 0-3 or 0,2,5 (non-negative integers, ranges "
                            "A-B)")
        first, last = int(low), int(high) if dash else int(low)
        if last < first:
            raise UserError(f"--seeds {spec}: the range {item.strip()} runs backwards; write {last}-{first}")
        if len(seeds) + last - first + 1 > MAX_SEEDS:
            raise UserError(f"--seeds {spec} asks for more than {MAX_SEEDS} samples per sketch")
        seeds += range(first, last + 1)
    twice = sorted({s for s in seeds if seeds.count(s) > 1})
    if twice:
        raise UserError(f"--seeds {spec} gives seed {twice[0]} twice; each seed is one file")
    return tuple(seeds)


def output_is_file(out: Path) -> bool:
    """Whether ``--out`` names the output file (FILE.png, not an existing folder) rather than a folder."""
    out = Path(out)
    if out.is_dir():
        return False
    if is_image_file(out) and out.suffix.lower() != ".png":
        raise UserError(f"--out {out}: outputs are PNG files; name the file .png or pass a folder")
    return out.suffix.lower() == ".png"


def _seeded(path: Path, seed: int | None) -> Path:
    return path if seed is None else path.with_name(f"{path.stem}_seed{seed}.png")


def _check_input(path: Path, what: str) -> None:
    if not path.exists():
        raise UserError(f"--{what} {path} does not exist; pass an image file or a folder of images")
    if path.is_file() and not is_image_file(path):
        raise UserError(f"--{what} {path} is not an image file (expected {', '.join(IMAGE_EXTENSIONS)})")


def reference_sets(entries: list[ImageEntry], reference: Path) -> dict[str, tuple[Path, ...]]:
    """Each sketch's references from a reference folder: the sub-folder of its name (all its images), else the file
    of its name."""
    sets = {e.name: tuple(r.path for r in scan_folder(reference / e.name)) for e in entries
            if (reference / e.name).is_dir()}
    files = [e for e in entries if e.name not in sets]
    return {**sets, **{name: (path,) for name, path in pair_by_name(files, reference, "reference").items()}} \
        if files else sets


def plan_jobs(sketch: Path, reference: Path | Sequence[Path], out: Path, trajectory_dir: Path | None = None,
              seeds: Sequence[int] | None = None) -> list[Job]:
    """Pair sketches with references and outputs (see the module docstring), seed by seed; raises
    :class:`UserError`. ``reference``: one file or folder, or several files (one set for every sketch)."""
    given = [Path(r) for r in reference] if isinstance(reference, (list, tuple)) else [Path(reference)]
    sketch, reference, out = Path(sketch), given[0], Path(out)
    _check_input(sketch, "sketch")
    for path in given:
        _check_input(path, "reference")
    if len(given) > 1 and any(path.is_dir() for path in given):
        raise UserError("--reference takes one folder, or one or more image files (a set for every sketch); for a "
                        "set per sketch, put each in a sub-folder <sketch name>/ of one reference folder")
    single = output_is_file(out)
    if out.exists() and not out.is_dir() and not single:
        raise UserError(f"--out {out} is a file; pass a folder (or FILE.png with one --sketch file)")
    if sketch.is_file():
        entries = [ImageEntry(sketch.stem, sketch)]
        if reference.is_dir():
            raise UserError(f"--reference {reference} is a folder but --sketch {sketch} is one file; pass one "
                            "reference file, or a sketch folder to pair with the reference folder by name")
    else:
        if single:
            raise UserError(f"--out {out} names one file but --sketch {sketch} is a folder; pass an output folder")
        entries = scan_folder(sketch)
        if out.resolve().is_relative_to(sketch.resolve()):
            raise UserError(f"--out {out} lies inside --sketch {sketch}; its outputs would be read back as sketches")
    if reference.is_dir():
        references = reference_sets(entries, reference)
    else:
        references = {e.name: tuple(given) for e in entries}
    root = out.parent if single else out
    jobs = []
    for seed in seeds or [None]:
        for e in entries:
            output = _seeded(out if single else out / f"{e.name}.png", seed)
            trajectory = trajectory_dir / output.relative_to(root) if trajectory_dir is not None else None
            jobs.append(Job(e.name, e.path, references[e.name], output, trajectory, seed))
    clash = [str(p) for p, n in Counter(job.output for job in jobs).items() if n > 1]
    if clash:
        raise UserError(f"two sketches would write the same output ({listing(clash)}); rename one of them")
    return jobs


def default_trajectory_dir(out: Path) -> Path:
    """``OUT_trajectory`` next to ``OUT`` (``FILE_trajectory`` for ``FILE.png``): outside it, so that ``OUT`` stays a
    clean folder for the evaluation."""
    out = Path(out)
    return out.parent / f"{out.stem if output_is_file(out) else out.name}_trajectory"


def check_outputs(jobs: list[Job], overwrite: bool) -> None:
    """Refuse outputs that would replace an input file, and existing output files unless ``overwrite`` (one line
    naming them)."""
    inputs = {p.resolve() for job in jobs for p in (job.sketch, *job.references)}
    outputs = [p for job in jobs for p in (job.output, job.trajectory) if p is not None]
    clobbered = [str(p) for p in outputs if p.resolve() in inputs]
    if clobbered:
        raise UserError(f"output file(s) would replace input files ({listing(clobbered)}); choose another --out")
    if overwrite:
        return
    existing = [str(p) for p in outputs if p.exists()]
    if existing:
        raise UserError(f"{len(existing)} output file(s) exist already ({listing(existing)}); pass --overwrite to "
                        "replace them or choose another --out")


def check_readable(jobs: list[Job]) -> None:
    """Every input file opens as an image (header only: cheap); otherwise one line naming the bad files."""
    paths = sorted({job.sketch for job in jobs} | {r for job in jobs for r in job.references})
    bad = [p for p in (header_problem(path) for path in paths) if p is not None]
    if bad:
        raise UserError(f"{len(bad)} input file(s) are not readable images ({listing(bad)}); replace or remove them")


# -- the run -------------------------------------------------------------------------------------------------------


@dataclass
class ColorizeResult:
    jobs: list[Job]
    size: int
    size_source: str
    converted: list[str]
    device: str
    steps: int
    sampler: str
    grid: str
    rho: float
    realism: float = 0.0
    sigma_start: float | None = None


def _batches(jobs: list[Job], size: int) -> Iterator[tuple[int | None, int, list[Job]]]:
    """(seed, index, batch): the jobs of each seed cut into batches of ``size``, numbered from 0 per seed (so a seed
    of --seeds draws the noise a run with that --seed draws)."""
    for seed, group in groupby(jobs, key=lambda job: job.seed):
        group = list(group)
        for index, start in enumerate(range(0, len(group), size)):
            yield seed, index, group[start : start + size]


def _save_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")


def _trajectory(colorizer: Colorizer, batch: Batch, recorder: TrajectoryRecorder, k: int) -> np.ndarray:
    """Image ``k``'s trajectory grid: the sketch the model saw (low-passed by realism, with its hints) and the
    reference, then the recorded states and x0 predictions."""
    from models.controls import lowpass_sketch  # noqa: PLC0415 - models loads lazily

    cond = batch.cond
    seen = lowpass_sketch(cond.sketch[k : k + 1], colorizer.realism)[0]
    seen = show_hints(seen, None if cond.hints is None else cond.hints[k])
    mask = cond.ref_mask
    real = None if mask is None else mask[k] if mask.dim() == 2 else mask[k].flatten(1).any(1)  # not the padding
    references = cond.reference[k] if real is None else cond.reference[k][real]
    return trajectory_grid(seen.cpu(), references.cpu(), [s[k] for s in recorder.states],
                           [p[k] for p in recorder.predictions])


def colorize(checkpoint: Path, sketch: Path, reference: Path | Sequence[Path], out: Path,
             options: ColorizeOptions | None = None, trajectory_dir: Path | None = None) -> ColorizeResult:
    """Colorize ``sketch`` (file or folder) with ``reference`` (file or folder, or several files: one set of
    references) into ``out`` (folder, or a PNG file for one sketch); see the module docstring. Raises
    :class:`UserError` for bad input, before any output is written where it can."""
    options = options or ColorizeOptions()
    check_options(options)
    if options.save_trajectory and trajectory_dir is None:
        trajectory_dir = default_trajectory_dir(out)
    jobs = plan_jobs(sketch, reference, out, trajectory_dir if options.save_trajectory else None, options.seeds)
    check_outputs(jobs, options.overwrite)
    check_readable(jobs)
    colorizer = Colorizer.from_checkpoint(checkpoint, options)
    most = max(len(job.references) for job in jobs)
    if most > 1 and not colorizer.takes_several_references:
        raise UserError(f"--reference: {most} references for a sketch, but {checkpoint} takes one (train with "
                        "configs/variants/multiref.yaml for several); pass one reference per sketch")
    keep = trajectory_steps(colorizer.sampled_steps, options.trajectory_frames)
    # One reference set for many sketches is loaded once; references paired by name are loaded with their batch.
    shared = [load_rgb(r) for r in jobs[0].references] if len({j.references for j in jobs}) == 1 else None
    converted: dict[str, None] = {}
    batches = list(_batches(jobs, options.batch_size))
    bar = tqdm(batches, desc="colorize", unit="batch", disable=not options.progress, file=sys.stderr)
    for seed, index, batch in bar:
        inputs = colorizer.prepare([job.sketch for job in batch],
                                   [shared if shared is not None else job.references for job in batch],
                                   [hints_file(options.hints, job.name) for job in batch])
        converted.update((job.name, None) for job, s in zip(batch, inputs.sketches) if s.converted)
        recorder = TrajectoryRecorder(keep) if options.save_trajectory else None
        images = colorizer.sample(inputs, options.seed if seed is None else seed, index, callback=recorder)
        for k, (job, image) in enumerate(zip(batch, images)):
            _save_png(image, job.output)
            if recorder is not None and job.trajectory is not None:
                _save_png(_trajectory(colorizer, inputs, recorder, k), job.trajectory)
    return ColorizeResult(jobs, colorizer.size, colorizer.size_source, list(converted), str(colorizer.device),
                          colorizer.steps, colorizer.sampler, colorizer.grid, colorizer.rho, colorizer.realism,
                          colorizer.sigma_start)
