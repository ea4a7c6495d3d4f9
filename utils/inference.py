"""Colorize sketches with a trained checkpoint: the logic behind ``colorize.py``.

The steps, in the order :func:`colorize` runs them (everything that can be checked cheaply is checked before the
checkpoint is loaded or a single image is sampled):

1. :func:`plan_jobs` pairs every sketch with its reference and its output file. A sketch folder is scanned
   recursively; an image's *name* is its path relative to the folder without the extension, and its output is
   ``OUT/<name>.png``. One reference file serves every sketch; a reference folder is paired with the sketch folder by
   name (missing names are one error listing them).
2. :func:`check_outputs` refuses to replace existing files unless ``overwrite`` (one line listing them).
3. :func:`check_readable` opens the header of every input file (one line listing the unreadable ones).
4. The checkpoint is loaded (:mod:`models.checkpoint`, EMA weights; only the project's classes, or those in
   ``trusted_classes``) and the processing size is
   resolved (:func:`resolve_size`): ``size`` when given, else the ``size`` the checkpoint's datamodule was trained
   with (LightningCLI stores it as ``datamodule_hyper_parameters``).
5. Per batch: each sketch is letterboxed to a square (white padding) and resized to the processing size
   (:class:`Letterbox`); a colour image given as the sketch is first turned into one with the project's XDoG
   (:func:`looks_like_sketch` states the rule). The reference is resized and centre-cropped to the processing size,
   as training references are. The model samples from seeded noise, and each output is resized back to its sketch's
   original size and saved as PNG. ``save_trajectory`` also writes, per image, a grid of the sampler's states and x0
   predictions along the steps (:func:`trajectory_grid`).

Determinism: the noise of batch ``j`` is drawn from a generator seeded with ``(seed, j)``, so the same inputs, seed,
batch size, device and software give byte-identical files. Different batch sizes give different noise per image.

Guidance: ``guidance_sketch`` / ``guidance_reference`` are the two classifier-free guidance scales of
:class:`models.guidance.GuidedDenoiser` (None keeps the checkpoint's). Gradient guidance at sampling time (SSIM
guidance, :mod:`models.ssim_guidance`) plugs in through ``ColorizeOptions.guide_factory``: a callable that receives
each batch's :class:`~models.denoiser.Cond` (the input sketch is its honest target) and returns the sampler's
``guide`` (``colorize.py --guidance-ssim S`` passes the SSIM guide towards the input sketch).
"""
from __future__ import annotations

import math
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

import cv2
import numpy as np
import torch
import torchvision
from PIL import Image
from tqdm import tqdm

from data.folder import ImageEntry, pair_by_name, scan_folder
from utils.xdog import XDoGParams
from utils.errors import UserError
from utils.images import IMAGE_EXTENSIONS, ImageReadError, image_size, load_rgb, resize_center_crop, to_tensor

#: How many file names an error message lists before "and N more".
SHOWN = 5
#: Sketch detection (:func:`looks_like_sketch`): a pixel is coloured when max(R, G, B) - min(R, G, B) exceeds
#: CHROMA_LEVEL, white when mean(R, G, B) >= WHITE_LEVEL, mid-grey when BLACK_LEVEL < mean(R, G, B) < WHITE_LEVEL.
CHROMA_LEVEL = 24
WHITE_LEVEL = 200
BLACK_LEVEL = 55
MAX_COLOURED = 0.02  # near-grayscale: at most this fraction of coloured pixels
MIN_WHITE = 0.5  # mostly white: at least this fraction of white pixels
MAX_MIDTONE = 0.15  # line art: at most this fraction of mid-grey pixels...
MAX_MIDTONE_DENSE = 0.05  # ...and at most this one when less than MIN_WHITE of the pixels are white
SKETCH_TYPES = ("auto", "sketch", "image")
INFERENCE_SAMPLERS = ("heun", "euler", "dpmpp_2m")

Guide = Callable[[torch.Tensor], torch.Tensor]
GuideFactory = Callable[["Cond"], Guide | None]  # noqa: F821 - models.denoiser.Cond, imported lazily


def _listing(items: list[str]) -> str:
    shown = ", ".join(items[:SHOWN])
    return shown + (f" and {len(items) - SHOWN} more" if len(items) > SHOWN else "")


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
        raise UserError(f"output file(s) would replace input files ({_listing(clobbered)}); choose another --out")
    if overwrite:
        return
    existing = [str(p) for p in outputs if p.exists()]
    if existing:
        raise UserError(f"{len(existing)} output file(s) exist already ({_listing(existing)}); pass --overwrite to "
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
        raise UserError(f"{len(bad)} input file(s) are not readable images ({_listing(bad)}); replace or remove them")


# -- image preparation ---------------------------------------------------------------------------------------------


def looks_like_sketch(rgb: np.ndarray) -> bool:
    """The sketch detection rule: near-grayscale (at most 2 % of the pixels have max(R,G,B) - min(R,G,B) > 24),
    mostly white (at least half the pixels have mean(R,G,B) >= 200) and line art (at most 15 % mid-grey pixels,
    55 < mean(R,G,B) < 200). A black-and-white image with less white (dense line art at small sizes: at most 5 %
    mid-grey) also counts as a sketch.

    Measured on the shared anime faces (128 px): their XDoG sketches are 72-90 % white with no mid-grey (dense 16 px
    sketches of the procedural faces can be 45 % white); the colour faces have >= 27 % coloured pixels; their
    grayscale versions have >= 18 % mid-grey pixels, so they are converted. Converting costs little when in doubt:
    XDoG leaves its own sketches unchanged, and turns soft or grey lines into the black lines the model was
    trained on."""
    if rgb.ndim == 2:
        coloured = 0.0
        level = rgb.astype(np.float32)
    else:
        chroma = rgb.max(axis=2).astype(np.int16) - rgb.min(axis=2).astype(np.int16)
        coloured = float((chroma > CHROMA_LEVEL).mean())
        level = rgb.astype(np.float32).mean(axis=2)
    white = float((level >= WHITE_LEVEL).mean())
    midtone = float(((level > BLACK_LEVEL) & (level < WHITE_LEVEL)).mean())
    if coloured > MAX_COLOURED or midtone > MAX_MIDTONE:
        return False
    return white >= MIN_WHITE or midtone <= MAX_MIDTONE_DENSE


def _resize(img: np.ndarray, width: int, height: int) -> np.ndarray:
    h, w = img.shape[:2]
    if (h, w) == (height, width):
        return img
    interp = cv2.INTER_AREA if width * height < w * h else cv2.INTER_CUBIC
    return cv2.resize(img, (width, height), interpolation=interp)


@dataclass(frozen=True)
class Letterbox:
    """An (height, width) image centred on a square of side max(height, width), which is resized to ``size``."""

    height: int
    width: int
    size: int

    @property
    def side(self) -> int:
        return max(self.height, self.width)

    @property
    def offset(self) -> tuple[int, int]:
        return (self.side - self.height) // 2, (self.side - self.width) // 2

    def forward(self, img: np.ndarray, border: str) -> np.ndarray:
        """Pad (``border``: "white" or "replicate") to the square and resize it to ``size``."""
        top, left = self.offset
        bottom, right = self.side - self.height - top, self.side - self.width - left
        if top or bottom or left or right:
            if border == "white":
                img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_CONSTANT, value=(255, 255, 255))
            else:
                img = cv2.copyMakeBorder(img, top, bottom, left, right, cv2.BORDER_REPLICATE)
        return _resize(img, self.size, self.size)

    def inverse(self, img: np.ndarray) -> np.ndarray:
        """A (size, size[, C]) uint8 result back to (height, width[, C]): resize to the square, cut the padding."""
        if self.side == self.size:
            square = img
        else:
            square = np.clip(_resize(img.astype(np.float32), self.side, self.side) + 0.5, 0, 255).astype(np.uint8)
        top, left = self.offset
        return np.ascontiguousarray(square[top : top + self.height, left : left + self.width])


@dataclass(frozen=True)
class PreparedSketch:
    sketch: np.ndarray  # uint8 (size, size)
    letterbox: Letterbox
    converted: bool  # the file was a colour image turned into a sketch with XDoG


def prepare_sketch(path: Path, size: int, xdog_params: XDoGParams, sketch_type: str = "auto") -> PreparedSketch:
    """The model-size sketch of a file; a colour image (``sketch_type`` "image", or "auto" and
    :func:`looks_like_sketch` false) is resized first and then turned into a sketch with XDoG at the model size, as
    the training sketches were made."""
    rgb = load_rgb(path)
    box = Letterbox(rgb.shape[0], rgb.shape[1], size)
    convert = sketch_type == "image" or (sketch_type == "auto" and not looks_like_sketch(rgb))
    if convert:
        sigma = float(np.median(xdog_params.sigmas))
        image = box.forward(rgb, border="replicate")
        sketch = xdog_params.extract(image, sigma)
    else:
        gray = np.array(Image.fromarray(rgb).convert("L"), dtype=np.uint8)
        sketch = box.forward(gray, border="white")
    return PreparedSketch(sketch, box, convert)


def prepare_reference(path: Path, size: int) -> np.ndarray:
    """The reference as the model saw references in training: short side resized to ``size``, centre square."""
    return resize_center_crop(load_rgb(path), size)


# -- trajectory ----------------------------------------------------------------------------------------------------


def trajectory_steps(steps: int, frames: int) -> list[int]:
    """Indices of the sampler steps shown in a trajectory grid: ``frames`` evenly spaced ones, the last included
    (0 or >= steps: all)."""
    if frames <= 0 or frames >= steps:
        return list(range(steps))
    return sorted({round(i * (steps - 1) / (frames - 1)) for i in range(frames)}) if frames > 1 else [steps - 1]


class TrajectoryRecorder:
    """Sampler callback keeping, at the chosen steps, the state x_i (scaled by 1/sqrt(1 + sigma^2) so that the
    noisy early states stay visible) and the x0 prediction D(x_i; sigma_i), on the CPU."""

    def __init__(self, keep: list[int]):
        self.keep = set(keep)
        self.states: list[torch.Tensor] = []
        self.predictions: list[torch.Tensor] = []

    def __call__(self, i: int, x: torch.Tensor, denoised: torch.Tensor, sigma: torch.Tensor) -> None:
        if i in self.keep:
            self.states.append((x / math.sqrt(1.0 + float(sigma) ** 2)).float().cpu())
            self.predictions.append(denoised.float().cpu())


def trajectory_grid(sketch: torch.Tensor, reference: torch.Tensor, states: list[torch.Tensor],
                    predictions: list[torch.Tensor]) -> np.ndarray:
    """One image's denoising trajectory as a uint8 (H, W, 3) grid of two rows: the sketch, then the sampler's states
    x_i from pure noise on; the reference, then the x0 predictions at the same steps (the last is the output)."""
    top = [sketch.expand(3, -1, -1), *states]
    bottom = [reference, *predictions]
    tiles = torch.stack([((t.float() + 1) / 2).clamp(0, 1) for t in top + bottom])
    grid = torchvision.utils.make_grid(tiles, nrow=len(top), padding=2, pad_value=1.0)
    return (grid * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()


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
            float(datamodule_hp.get("xdog_phi", defaults.phi)),
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


def check_options(options: ColorizeOptions) -> None:
    if options.steps is not None and options.steps < 1:
        raise UserError(f"--steps must be at least 1, got {options.steps}")
    if options.batch_size < 1:
        raise UserError(f"--batch-size must be at least 1, got {options.batch_size}")
    if options.sketch_type not in SKETCH_TYPES:
        raise UserError(f"--sketch-type must be one of {', '.join(SKETCH_TYPES)}, got {options.sketch_type!r}")
    if options.trajectory_frames < 0:
        raise UserError(f"--trajectory-frames must be 0 (all) or more, got {options.trajectory_frames}")


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
    if options.guidance_sketch is not None:
        hp.guidance_sketch = float(options.guidance_sketch)
    if options.guidance_reference is not None:
        hp.guidance_reference = float(options.guidance_reference)

    if device.type == "cuda":
        torch.backends.cudnn.benchmark = False
        torch.backends.cudnn.deterministic = True
    model = model.to(device)
    keep = trajectory_steps(steps, options.trajectory_frames)
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
        cond = Cond(
            torch.stack([to_tensor(s.sketch) for s in sketches]).to(device),
            torch.stack([to_tensor(r) for r in refs]).to(device),
        )
        recorder = TrajectoryRecorder(keep) if options.save_trajectory else None
        guide = options.guide_factory(cond) if options.guide_factory is not None else None
        with torch.no_grad():
            result = model.sample(cond, steps=steps, sampler=sampler, seed=batch_seed(options.seed, index),
                                  use_ema=True, guide=guide, callback=recorder, **options.extra_sampler_options)
        pixels = ((result.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
        for k, (job, prepared) in enumerate(zip(batch, sketches)):
            _save_png(prepared.letterbox.inverse(pixels[k].permute(1, 2, 0).numpy()), job.output)
            if recorder is not None and job.trajectory is not None:
                grid = trajectory_grid(cond.sketch[k].cpu(), cond.reference[k].cpu(),
                                       [s[k] for s in recorder.states], [p[k] for p in recorder.predictions])
                _save_png(grid, job.trajectory)
    return ColorizeResult(jobs, size, size_source, converted, str(device), steps, sampler)
