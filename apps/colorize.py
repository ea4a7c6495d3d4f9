"""Colorize sketches with a trained checkpoint: the logic behind ``colorize.py``.

The steps, in the order :func:`colorize` runs them (everything that can be checked cheaply is checked before the
checkpoint is loaded or a single image is sampled):

1. :func:`plan_jobs` pairs every sketch with its reference and its output file. A sketch folder is scanned
   recursively; an image's *name* is its path relative to the folder without the extension, and its output is
   ``OUT/<name>.png``. One reference file serves every sketch; a reference folder is paired with the sketch folder by
   name (missing names are one error listing them).
2. :func:`check_outputs` refuses to replace existing files unless ``overwrite`` (one line listing them).
3. :func:`check_readable` opens the header of every input file (one line listing the unreadable ones).
4. The checkpoint is read once (:mod:`models.checkpoint`: only the project's classes, or those in
   ``trusted_classes``; EMA weights) and the processing size is resolved (:func:`resolve_size`): ``size`` when
   given, else the ``size`` the checkpoint's datamodule was trained with (LightningCLI stores it as
   ``datamodule_hyper_parameters``).
5. Per batch (:mod:`apps.colorize_inputs`): each sketch is letterboxed to a square (white padding) and resized to
   the processing size; a colour image given as the sketch is first turned into one with the project's XDoG
   (``looks_like_sketch`` states the rule). The reference is resized and centre-cropped to the processing size, as
   training references are. The model samples from seeded noise, and each output is resized back to its sketch's
   original size and saved as PNG. ``save_trajectory`` also writes, per image, a grid of the sampler's states and x0
   predictions along the steps.

Determinism: the noise of batch ``j`` is drawn from a generator seeded with ``(seed, j)``, so the same inputs, seed,
batch size, device and software give byte-identical files. Different batch sizes give different noise per image.

Controls (:mod:`models.controls`): ``realism`` low-passes the sketch (DiSS); ``sigma_start`` starts the sampler
from ``init`` ("reference", "flat" or an image file, fitted to each sketch like the sketch) noised to that sigma, on
the grid truncated there (PASD's adjustable noise start). None keeps the checkpoint's (off unless configured). The
trajectory grid then shows the sketch the model saw and the steps actually sampled. ``hints`` gives a model trained
with colour hints (:mod:`data.hints`) an RGBA hint image per sketch, letterboxed like it.

Guidance: ``guidance_sketch`` / ``guidance_reference`` are the two classifier-free guidance scales of
:class:`models.guidance.GuidedDenoiser` (None keeps the checkpoint's). Gradient guidance at sampling time (SSIM
guidance, :mod:`models.ssim_guidance`) plugs in through ``ColorizeOptions.guide_factory``: a callable that receives
each batch's :class:`~models.denoiser.Cond` (the input sketch is its honest target) and returns the sampler's
``guide`` (``colorize.py --guidance-ssim S`` passes the SSIM guide towards the input sketch).
"""
from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from data.folder import ImageEntry, pair_by_name, scan_folder
from utils.errors import UserError, listing
from utils.images import IMAGE_EXTENSIONS, ImageReadError, image_size, load_rgb, quantize, to_tensor
from utils.xdog import XDoGParams

from .colorize_inputs import (TrajectoryRecorder, hints_file, prepare_hints, prepare_reference, prepare_sketch,
                              show_hints, trajectory_grid, trajectory_steps)

SKETCH_TYPES = ("auto", "sketch", "image")
INFERENCE_SAMPLERS = ("euler_ancestral", "euler", "heun", "dpmpp_2m", "cold")  # cold: the cold-diffusion baseline's own
INIT_KINDS = ("reference", "flat", "warp")  # models.controls.INIT_KINDS (not imported: models loads lazily)

Guide = Callable[[torch.Tensor], torch.Tensor]
GuideFactory = Callable[["Cond"], Guide | None]  # noqa: F821 - models.denoiser.Cond, imported lazily


# -- planning ------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    """One sketch to colorize: its name, input files and output files."""

    name: str
    sketch: Path
    reference: Path
    output: Path
    trajectory: Path | None = None


def _is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def _check_input(path: Path, what: str) -> None:
    if not path.exists():
        raise UserError(f"--{what} {path} does not exist; pass an image file or a folder of images")
    if path.is_file() and not _is_image_file(path):
        raise UserError(f"--{what} {path} is not an image file (expected {', '.join(IMAGE_EXTENSIONS)})")


def plan_jobs(sketch: Path, reference: Path, out: Path, trajectory_dir: Path | None = None) -> list[Job]:
    """Pair sketches with references and outputs (see the module docstring); raises :class:`UserError`."""
    sketch, reference, out = Path(sketch), Path(reference), Path(out)
    _check_input(sketch, "sketch")
    _check_input(reference, "reference")
    if out.exists() and not out.is_dir():
        raise UserError(f"--out {out} is a file; pass a folder")
    if sketch.is_file():
        entries = [ImageEntry(sketch.stem, sketch)]
        if reference.is_dir():
            raise UserError(f"--reference {reference} is a folder but --sketch {sketch} is one file; pass one "
                            "reference file, or a sketch folder to pair with the reference folder by name")
    else:
        entries = scan_folder(sketch)
        if out.resolve().is_relative_to(sketch.resolve()):
            raise UserError(f"--out {out} lies inside --sketch {sketch}; its outputs would be read back as sketches")
    if reference.is_dir():
        references = pair_by_name(entries, reference, what="reference")
    else:
        references = {e.name: reference for e in entries}
    return [
        Job(e.name, e.path, references[e.name], out / f"{e.name}.png",
            trajectory_dir / f"{e.name}.png" if trajectory_dir is not None else None)
        for e in entries
    ]


def default_trajectory_dir(out: Path) -> Path:
    """``OUT_trajectory`` next to ``OUT``: outside it, so that ``OUT`` stays a clean folder for the evaluation."""
    out = Path(out)
    return out.parent / f"{out.name}_trajectory"


def check_outputs(jobs: list[Job], overwrite: bool) -> None:
    """Refuse outputs that would replace an input file, and existing output files unless ``overwrite`` (one line
    naming them)."""
    inputs = {p.resolve() for job in jobs for p in (job.sketch, job.reference)}
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


def _header_problem(path: Path) -> str | None:
    try:
        image_size(path)
    except ImageReadError as err:
        return str(err).split("; ")[0]
    return None


def check_readable(jobs: list[Job]) -> None:
    """Every input file opens as an image (header only: cheap); otherwise one line naming the bad files."""
    paths = sorted({job.sketch for job in jobs} | {job.reference for job in jobs})
    bad = [p for p in (_header_problem(path) for path in paths) if p is not None]
    if bad:
        raise UserError(f"{len(bad)} input file(s) are not readable images ({listing(bad)}); replace or remove them")


# -- the run -------------------------------------------------------------------------------------------------------


@dataclass
class ColorizeOptions:
    """What :func:`colorize` does besides the inputs; None means "as the checkpoint says"."""

    steps: int | None = None
    sampler: str | None = None
    guidance_sketch: float | None = None
    guidance_reference: float | None = None
    seed: int = 0
    batch_size: int = 8
    size: int | None = None
    device: str | None = None
    sketch_type: str = "auto"
    save_trajectory: bool = False
    trajectory_frames: int = 10
    #: DiSS realism weight in [0, 1] (None: the checkpoint's, 0 unless configured).
    realism: float | None = None
    #: Adjustable noise start: sample from ``init`` noised to this sigma (None: the checkpoint's, pure noise unless
    #: configured). ``init``: "reference", "flat" (the reference's mean colour) or an image file (an earlier result).
    sigma_start: float | None = None
    init: str = "reference"
    #: Colour hints: an RGBA file of the sketch's size (opaque pixels are hints) for every sketch, or a folder of
    #: <name>.png per sketch (sketches without one get none). Needs a model trained with hints.
    hints: Path | None = None
    overwrite: bool = False
    progress: bool = True
    #: Gradient guidance at sampling time (see the module docstring); called once per batch with its Cond.
    guide_factory: GuideFactory | None = None
    #: Class paths outside the project's registry that the checkpoint may name (the user's own network, say).
    trusted_classes: tuple[str, ...] = ()
    extra_sampler_options: dict = field(default_factory=dict)


@dataclass
class ColorizeResult:
    jobs: list[Job]
    size: int
    size_source: str
    converted: list[str]
    device: str
    steps: int
    sampler: str
    realism: float = 0.0
    sigma_start: float | None = None


def resolve_size(size: int | None, datamodule_hp: dict, checkpoint: Path, factor: int) -> tuple[int, str]:
    """The processing size and where it came from; it must be a multiple of the U-Net's downsampling ``factor``."""
    if size is not None:
        source = "--size"
    elif isinstance(datamodule_hp.get("size"), int):
        size, source = datamodule_hp["size"], "the checkpoint's training size"
    else:
        raise UserError(f"{checkpoint} does not record its training image size (no datamodule_hyper_parameters); "
                        "pass --size with the size the model was trained at")
    if size < 8 or size % factor:
        raise UserError(f"processing size {size} ({source}) must be at least 8 and a multiple of {factor} for this "
                        "model's U-Net")
    return size, source


def checkpoint_xdog(datamodule_hp: dict) -> XDoGParams:
    """The checkpoint's XDoG parameters (the project's defaults where it records none)."""
    defaults = XDoGParams()
    try:
        return XDoGParams(
            tuple(datamodule_hp.get("xdog_sigmas", defaults.sigmas)), float(datamodule_hp.get("xdog_k", defaults.k)),
            float(datamodule_hp.get("xdog_p", defaults.p)), float(datamodule_hp.get("xdog_epsilon", defaults.epsilon)),
            float(datamodule_hp.get("xdog_ramp", datamodule_hp.get("xdog_phi", defaults.ramp))),  # older: "xdog_phi"
            # checkpoints that do not record it were trained on the paper's XDoG
            str(datamodule_hp.get("xdog_contrast", "none")),
        )
    except (TypeError, ValueError):
        return defaults


def resolve_device(device: str | None) -> torch.device:
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device}: no CUDA device is available here; use --device cpu")
    try:
        return torch.device(device)
    except RuntimeError as err:
        raise UserError(f"--device {device}: {err}") from None


def batch_seed(seed: int, index: int) -> int:
    """The noise seed of batch ``index``: independent streams for every (seed, batch) pair."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1, dtype=np.uint64)[0] >> 1)


def _batches(jobs: list[Job], size: int) -> Iterator[list[Job]]:
    for start in range(0, len(jobs), size):
        yield jobs[start : start + size]


def _save_png(array: np.ndarray, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array).save(path, format="PNG")


def initial_images(init: str, cond, sketches: list, init_rgb: np.ndarray | None, net=None) -> torch.Tensor:
    """The images a noise start begins from, in [-1, 1] like the reference batch: one of :data:`INIT_KINDS`
    (:func:`models.controls.initial_image`; "warp" needs ``net``'s correspondence warp), or ``init_rgb`` (an
    earlier result) letterboxed like each sketch."""
    if init in INIT_KINDS:
        from models.controls import initial_image  # noqa: PLC0415 - models loads lazily

        return initial_image(init, cond.sketch, cond.reference, net)
    images = []
    for prepared in sketches:
        box = prepared.letterbox
        fitted = cv2.resize(init_rgb, (box.width, box.height), interpolation=cv2.INTER_AREA) \
            if init_rgb.shape[:2] != (box.height, box.width) else init_rgb
        images.append(to_tensor(box.forward(fitted, border="replicate")))
    return torch.stack(images).to(cond.reference.device)


def check_options(options: ColorizeOptions) -> None:
    if options.steps is not None and options.steps < 1:
        raise UserError(f"--steps must be at least 1, got {options.steps}")
    if options.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {options.batch_size}")
    if options.sketch_type not in SKETCH_TYPES:
        raise UserError(f"--sketch-type must be one of {', '.join(SKETCH_TYPES)}, got {options.sketch_type!r}")
    if options.trajectory_frames < 0:
        raise UserError(f"--trajectory-frames must be 0 (all) or more, got {options.trajectory_frames}")
    if options.realism is not None and not 0.0 <= options.realism <= 1.0:
        raise UserError(f"--realism must be in [0, 1], got {options.realism}")
    if options.sigma_start is not None and not options.sigma_start > 0:
        raise UserError(f"--sigma-start must be positive, got {options.sigma_start}")
    if options.hints is not None and not Path(options.hints).exists():
        raise UserError(f"--hints {options.hints} does not exist; pass an RGBA image or a folder of them")
    if options.init not in INIT_KINDS:
        path = Path(options.init)
        if not path.is_file() or not _is_image_file(path):
            raise UserError(f"--init {options.init}: expected {', '.join(INIT_KINDS)} or an image file")
        problem = _header_problem(path)
        if problem is not None:
            raise UserError(f"--init {problem}; pass a readable image")


def colorize(checkpoint: Path, sketch: Path, reference: Path, out: Path, options: ColorizeOptions | None = None,
             trajectory_dir: Path | None = None) -> ColorizeResult:
    """Colorize ``sketch`` (file or folder) with ``reference`` (file or folder) into ``out``; see the module
    docstring. Raises :class:`UserError` for bad input, before any output is written where it can."""
    options = options or ColorizeOptions()
    check_options(options)
    if options.save_trajectory and trajectory_dir is None:
        trajectory_dir = default_trajectory_dir(out)
    jobs = plan_jobs(sketch, reference, out, trajectory_dir if options.save_trajectory else None)
    check_outputs(jobs, options.overwrite)
    check_readable(jobs)
    device = resolve_device(options.device)

    from models.checkpoint import build_model, read_checkpoint  # noqa: PLC0415 - slow imports; errors come first
    from models.controls import has_warp, lowpass_sketch, start_grid  # noqa: PLC0415
    from models.denoiser import Cond  # noqa: PLC0415

    checkpoint = Path(checkpoint)
    ckpt = read_checkpoint(checkpoint, trusted=options.trusted_classes)
    model = build_model(ckpt)
    datamodule_hp = ckpt.datamodule_hparams
    factor = 2 ** (getattr(model.ema.net, "levels", 1) - 1)
    size, size_source = resolve_size(options.size, datamodule_hp, checkpoint, factor)
    sketch_params = checkpoint_xdog(datamodule_hp)

    hp = model.hparams
    steps = options.steps or hp.steps
    # The differentiable Euler of trajectory refinement samples like Euler (without the graph) at inference.
    sampler = options.sampler or ("euler" if hp.sampler == "euler_diff" else hp.sampler)
    if sampler not in INFERENCE_SAMPLERS:
        raise UserError(f"--sampler must be one of {', '.join(INFERENCE_SAMPLERS)}, got {sampler!r}")
    guidance = (float(hp.guidance_sketch if options.guidance_sketch is None else options.guidance_sketch),
                float(hp.guidance_reference if options.guidance_reference is None else options.guidance_reference))

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    realism = float(hp.get("realism", 0.0) if options.realism is None else options.realism)
    sigma_start = hp.get("sigma_start") if options.sigma_start is None else options.sigma_start
    init_rgb = load_rgb(Path(options.init)) if sigma_start is not None and options.init not in INIT_KINDS else None

    if sigma_start is not None and options.init == "warp" and not has_warp(model.ema.net):
        raise UserError(f"--init warp: {checkpoint} has no correspondence warp (a model trained with "
                        "configs/variants/refattn.yaml has one)")
    if options.hints is not None and not model.ema.takes_hints:
        raise UserError(f"--hints: {checkpoint} was trained without colour hints (configs/variants/hints.yaml "
                        "trains a model that takes them)")
    model = model.to(device)
    # A noise start samples on a truncated grid: the trajectory shows its steps.
    sampled_steps = len(start_grid(model.schedule.grid(steps), sigma_start)) - 1
    keep = trajectory_steps(sampled_steps, options.trajectory_frames)
    # One reference for many sketches is loaded once; references paired by name are loaded with their batch.
    shared_reference = prepare_reference(jobs[0].reference, size) if len({j.reference for j in jobs}) == 1 else None
    converted: list[str] = []
    batches = list(_batches(jobs, options.batch_size))
    bar = tqdm(batches, desc="colorize", unit="batch", disable=not options.progress, file=sys.stderr)
    for index, batch in enumerate(bar):
        sketches = [prepare_sketch(job.sketch, size, sketch_params, options.sketch_type) for job in batch]
        converted += [job.name for job, s in zip(batch, sketches) if s.converted]
        refs = [shared_reference if shared_reference is not None else prepare_reference(job.reference, size)
                for job in batch]
        hint_files = [hints_file(options.hints, job.name) for job in batch]
        hints = torch.stack([prepare_hints(f, s.letterbox) if f else torch.zeros(4, size, size)
                             for f, s in zip(hint_files, sketches)]).to(device) if any(hint_files) else None
        cond = Cond(
            torch.stack([to_tensor(s.sketch) for s in sketches]).to(device),
            torch.stack([to_tensor(r) for r in refs]).to(device),
            hints,
        )
        recorder = TrajectoryRecorder(keep) if options.save_trajectory else None
        guide = options.guide_factory(cond) if options.guide_factory is not None else None
        with torch.no_grad():
            init = initial_images(options.init, cond, sketches, init_rgb, model.ema.net) if sigma_start is not None \
                else None
            result = model.sample(cond, steps=steps, sampler=sampler, seed=batch_seed(options.seed, index),
                                  guidance=guidance, guide=guide, callback=recorder, realism=realism,
                                  init=init, sigma_start=sigma_start, **options.extra_sampler_options)
        pixels = quantize(result)
        for k, (job, prepared) in enumerate(zip(batch, sketches)):
            _save_png(prepared.letterbox.inverse(pixels[k].permute(1, 2, 0).numpy()), job.output)
            if recorder is not None and job.trajectory is not None:
                seen = lowpass_sketch(cond.sketch[k : k + 1], realism)[0]  # the sketch the model saw, and its hints
                seen = show_hints(seen, None if hints is None else hints[k])
                grid = trajectory_grid(seen.cpu(), cond.reference[k].cpu(),
                                       [s[k] for s in recorder.states], [p[k] for p in recorder.predictions])
                _save_png(grid, job.trajectory)
    return ColorizeResult(jobs, size, size_source, converted, str(device), steps, sampler, realism, sigma_start)
