"""A checkpoint loaded once, ready to colorize any number of sketches: the Python API (docs/python-api.md) and the
engine of ``colorize.py`` and the web page (:func:`apps.colorize_jobs.colorize` plans the files and runs it).

    colorizer = Colorizer.from_checkpoint("last.ckpt", device="cpu")
    image = colorizer.colorize("sketch.png", "reference.png", seed=0)  # uint8 (H, W, 3), the sketch's size
    image = colorizer.colorize("sketch.png", ["front.png", "side.png"])  # several references (a multiref model)

:meth:`Colorizer.from_checkpoint` checks the options, reads the checkpoint (:mod:`models.checkpoint`: only the
project's classes, or those in ``trusted_classes``; EMA weights) and settles, once, what the options leave to it:
the processing size (``size``, else the ``size`` the checkpoint's datamodule was trained with, which LightningCLI
stores as ``datamodule_hyper_parameters``), the sampler, steps, grid, guidance scales and controls. Per batch
(:meth:`Colorizer.prepare`, :mod:`apps.colorize_inputs`): each sketch is letterboxed to a square (white padding) and
resized to the processing size; a colour image given as the sketch is first turned into one with the project's XDoG
(``looks_like_sketch`` states the rule). The reference is resized and centre-cropped to the processing size, as
training references are; several references for one sketch (for a model whose correspondence warp takes them,
``takes_several_references``) are stacked [B, K, 3, H, W] with a mask for sketches that have fewer.
:meth:`Colorizer.sample` samples from seeded noise and resizes each output back to its sketch's original size.

Determinism: the noise of batch ``index`` under ``seed`` is drawn from a generator seeded with (seed, index)
(:func:`batch_seed`), so the same inputs, seed, batch size, device and software give the same pixels.
``colorize(sketch, reference, seed=s)`` is batch 0 of one image: the file ``colorize.py --seed s`` writes for that
sketch alone.

Controls (:mod:`models.controls`): ``realism`` low-passes the sketch (DiSS); ``sigma_start`` starts the sampler from
``init`` ("reference", "flat", "warp" or an image file, fitted to each sketch like the sketch) noised to that sigma,
on the grid truncated there (PASD's adjustable noise start). ``hints`` gives a model trained with colour hints
(:mod:`data.hints`) an RGBA hint image per sketch, letterboxed like it. Guidance: ``guidance_sketch`` /
``guidance_reference`` are the classifier-free guidance scales of :class:`models.guidance.GuidedDenoiser`; gradient
guidance (SSIM guidance, :mod:`models.ssim_guidance`) plugs in through ``guide_factory``, called with each batch's
:class:`~models.denoiser.Cond` (the input sketch is its honest target) to return the sampler's ``guide``.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Sequence

import cv2
import numpy as np
import torch

from data.collate import pad_references
from utils.errors import UserError
from utils.images import (IMAGE_EXTENSIONS, ImageReadError, image_size, load_rgb, load_with_alpha, quantize,
                          shown_pixels, to_tensor)
from utils.xdog import XDoGParams

from .colorize_inputs import PreparedSketch, prepare_hints, prepare_reference, prepare_sketch

SKETCH_TYPES = ("auto", "sketch", "image")
INFERENCE_SAMPLERS = ("euler_ancestral", "euler", "heun", "dpmpp_2m", "cold")  # cold: the cold-diffusion baseline's own
# The lists of models.controls.INIT_KINDS and models.schedules.GRIDS (not imported: models loads lazily).
INIT_KINDS = ("reference", "flat", "warp")
GRIDS = ("phi", "edm")

Guide = Callable[[torch.Tensor], torch.Tensor]
GuideFactory = Callable[["Cond"], Guide | None]  # noqa: F821 - models.denoiser.Cond, imported lazily
#: An image given to :meth:`Colorizer.colorize`: a file, or an RGB (H, W, 3) / grey (H, W) uint8 array.
ImageInput = str | Path | np.ndarray
#: A sketch's reference: one image, or a list of them (a character sheet) for a model that takes several.
References = ImageInput | Sequence[ImageInput]


@dataclass
class ColorizeOptions:
    """What colorizing does besides the inputs; None means "as the checkpoint says"."""

    steps: int | None = None
    sampler: str | None = None
    #: The noise levels the sampler visits: "phi" (the schedule's own grid) or "edm" (EDM's eq. 5 with ``rho``).
    grid: str | None = None
    rho: float | None = None
    guidance_sketch: float | None = None
    guidance_reference: float | None = None
    seed: int = 0
    #: Several samples per sketch (colorize.py --seeds): one file per seed, <name>_seed<S>.png (None: one, ``seed``).
    seeds: tuple[int, ...] | None = None
    batch_size: int = 8
    size: int | None = None
    device: str | None = None
    sketch_type: str = "auto"
    save_trajectory: bool = False
    trajectory_frames: int = 10
    #: DiSS realism weight in [0, 1] (None: the checkpoint's, 0 unless configured).
    realism: float | None = None
    #: Adjustable noise start: sample from ``init`` noised to this sigma (None: the checkpoint's, pure noise unless
    #: configured). ``init``: "reference", "flat" (the reference's mean colour), "warp" or an image file.
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


def is_image_file(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS


def header_problem(path: Path) -> str | None:
    """Why ``path`` does not open as an image (its header only: cheap), or None."""
    try:
        image_size(path)
    except ImageReadError as err:
        return str(err).split("; ")[0]
    return None


def check_options(options: ColorizeOptions) -> None:
    if options.steps is not None and options.steps < 1:
        raise UserError(f"--steps must be at least 1, got {options.steps}")
    if options.grid is not None and options.grid not in GRIDS:
        raise UserError(f"--grid must be one of {', '.join(GRIDS)}, got {options.grid!r}")
    if options.rho is not None and not options.rho > 0:
        raise UserError(f"--rho must be positive, got {options.rho:g}")
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
        if not path.is_file() or not is_image_file(path):
            raise UserError(f"--init {options.init}: expected {', '.join(INIT_KINDS)} or an image file")
        problem = header_problem(path)
        if problem is not None:
            raise UserError(f"--init {problem}; pass a readable image")


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


def start_images(init: str, cond, sketches: list, init_rgb: np.ndarray | None, net=None) -> torch.Tensor:
    """The images a noise start begins from, in [-1, 1] like the reference batch: one of :data:`INIT_KINDS`
    (:func:`models.controls.start_image`; "warp" needs ``net``'s correspondence warp), or ``init_rgb`` (an
    earlier result) letterboxed like each sketch."""
    if init in INIT_KINDS:
        from models.controls import start_image  # noqa: PLC0415 - models loads lazily

        return start_image(init, cond.sketch, cond.reference, net, cond.ref_mask)
    images = []
    for prepared in sketches:
        box = prepared.letterbox
        fitted = cv2.resize(init_rgb, (box.width, box.height), interpolation=cv2.INTER_AREA) \
            if init_rgb.shape[:2] != (box.height, box.width) else init_rgb
        images.append(to_tensor(box.forward(fitted, border="replicate")))
    return torch.stack(images).to(cond.sketch.device)


def as_rgb(image: ImageInput, what: str) -> np.ndarray:
    """An image file or array as RGB uint8 (H, W, 3); anything else is one line naming ``what``."""
    if not isinstance(image, np.ndarray):
        return load_rgb(Path(image))
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 3)):
        raise UserError(f"the {what} array is {image.dtype} {tuple(image.shape)}; pass uint8 RGB (H, W, 3) or grey "
                        "(H, W), or a file")
    return np.dstack([image] * 3) if image.ndim == 2 else image.copy()  # a copy: the caller's may be read-only


@dataclass
class Batch:
    """Sketches and references prepared at the model's size: what :meth:`Colorizer.sample` colorizes."""

    sketches: list[PreparedSketch]
    cond: "Cond"  # noqa: F821 - models.denoiser.Cond, imported lazily


class Colorizer:
    """A checkpoint's model with the sampling settings resolved once (see the module docstring); build it with
    :meth:`from_checkpoint`."""

    def __init__(self, model, checkpoint: Path, datamodule_hp: dict, options: ColorizeOptions):
        from models.controls import has_warp  # noqa: PLC0415 - models loads lazily
        from models.sampling import check_pairing  # noqa: PLC0415

        hp = model.hparams
        self.checkpoint, self.options = Path(checkpoint), options
        self.device = resolve_device(options.device)
        factor = 2 ** (getattr(model.ema.net, "levels", 1) - 1)
        self.size, self.size_source = resolve_size(options.size, datamodule_hp, self.checkpoint, factor)
        self.sketch_params = checkpoint_xdog(datamodule_hp)
        self.steps = options.steps or hp.steps
        # The differentiable Euler of trajectory refinement samples like Euler (without the graph) at inference.
        self.sampler = options.sampler or ("euler" if hp.sampler == "euler_diff" else hp.sampler)
        if self.sampler not in INFERENCE_SAMPLERS:
            raise UserError(f"--sampler must be one of {', '.join(INFERENCE_SAMPLERS)}, got {self.sampler!r}")
        self.grid = options.grid or hp.get("grid", "phi")
        self.rho = float(hp.get("rho", 7.0) if options.rho is None else options.rho)
        if options.rho is not None and self.grid != "edm":
            raise UserError("--rho shapes the edm grid; pass --grid edm with it (this run samples on the phi grid)")
        try:
            check_pairing(model.schedule, self.sampler, self.grid)
        except ValueError as err:
            raise UserError(f"--sampler {self.sampler} --grid {self.grid} with {self.checkpoint}: {err}") from None
        self.guidance = (
            float(hp.guidance_sketch if options.guidance_sketch is None else options.guidance_sketch),
            float(hp.guidance_reference if options.guidance_reference is None else options.guidance_reference))
        self.realism = float(hp.get("realism", 0.0) if options.realism is None else options.realism)
        self.sigma_start = hp.get("sigma_start") if options.sigma_start is None else options.sigma_start
        self.init_rgb = load_rgb(Path(options.init)) \
            if self.sigma_start is not None and options.init not in INIT_KINDS else None
        if self.sigma_start is not None and options.init == "warp" and not has_warp(model.ema.net):
            raise UserError(f"--init warp: {self.checkpoint} has no correspondence warp (a model trained with "
                            "configs/variants/refattn.yaml has one)")
        if options.hints is not None and not model.ema.takes_hints:
            raise UserError(f"--hints: {self.checkpoint} was trained without colour hints (configs/variants/hints.yaml "
                            "trains a model that takes them)")
        if self.device.type == "cuda":
            torch.backends.cudnn.benchmark = False
            torch.backends.cudnn.deterministic = True
        self.model = model.to(self.device)

    @classmethod
    def from_checkpoint(cls, checkpoint: str | Path, options: ColorizeOptions | None = None, **changes) -> Colorizer:
        """Load ``checkpoint`` once; ``changes`` are :class:`ColorizeOptions` fields (``device="cpu"``,
        ``steps=10``, ``grid="edm"``, ...) applied to ``options``."""
        from models.checkpoint import build_model, read_checkpoint  # noqa: PLC0415 - slow imports; errors come first

        options = dataclasses.replace(options or ColorizeOptions(), **changes)
        check_options(options)
        ckpt = read_checkpoint(Path(checkpoint), trusted=options.trusted_classes)
        return cls(build_model(ckpt), Path(checkpoint), ckpt.datamodule_hparams, options)

    @property
    def takes_several_references(self) -> bool:
        """Whether the model matches several references per sketch at once (a correspondence warp)."""
        return bool(getattr(self.model.ema.net, "takes_several_references", False))

    def _references(self, references: Sequence[References]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Each sketch's reference(s) at the model's size: [B, 3, S, S], or [B, K, 3, S, S] and the mask [B, K] of
        the real ones when some sketch has several (K = the most any has), or [B, K, S, S] of the pixels shown
        when some reference has a transparent background (:meth:`_reference`)."""
        sets = [[r] if isinstance(r, (str, Path, np.ndarray)) else list(r) for r in references]
        if any(not refs for refs in sets):
            raise UserError("a sketch was given an empty set of references; pass at least one")
        several = self.takes_several_references
        tensors = [[self._reference(r, several) for r in refs] for refs in sets]
        most = max(len(refs) for refs in tensors)
        if any(t.shape[0] == 4 for refs in tensors for t in refs):  # some reference has a transparent background
            tensors = [[t if t.shape[0] == 4 else torch.cat([t, torch.ones_like(t[:1])]) for t in refs]
                       for refs in tensors]
        elif most == 1:
            return torch.stack([refs[0] for refs in tensors]).to(self.device), None
        if not several:
            raise UserError(f"{self.checkpoint} takes one reference per sketch, and {most} were given (a model "
                            "trained with configs/variants/multiref.yaml takes several)")
        padded, mask = pad_references([torch.stack(refs) for refs in tensors])
        return padded.to(self.device), mask.to(self.device)

    def _reference(self, image: ImageInput, alpha: bool) -> torch.Tensor:
        """A reference at the model's size: (3, S, S) in [-1, 1]; with ``alpha`` (a model whose warp passes over
        what is no part of a reference) and a transparent background (a file's, or an RGBA uint8 array's), (4, S, S)
        with the last channel 1 where the pixel is shown (alpha >= 128) and 0 where not, whose colour is then
        mid-grey (a training blank)."""
        is_rgba = isinstance(image, np.ndarray) and image.dtype == np.uint8 and image.shape[2:] == (4,)
        if not alpha or (isinstance(image, np.ndarray) and not is_rgba):
            return to_tensor(prepare_reference(as_rgb(image, "reference"), self.size))
        rgba = prepare_reference(image if is_rgba else load_with_alpha(Path(image)), self.size)
        if rgba[..., 3].min() == 255:
            return to_tensor(rgba[..., :3])
        shown = shown_pixels(rgba)
        if not shown.any():
            raise UserError(f"reference {image} is transparent everywhere; it shows nothing to take colours from")
        colours = to_tensor(np.where(shown, rgba[..., :3], np.uint8(128)))
        return torch.cat([colours, torch.from_numpy(shown.transpose(2, 0, 1)).float()])

    @property
    def sampled_steps(self) -> int:
        """The steps a sample takes: the grid's, fewer with a noise start (the grid truncated at sigma_start)."""
        from models.controls import start_grid  # noqa: PLC0415
        from models.schedules import sampler_grid  # noqa: PLC0415

        return len(start_grid(sampler_grid(self.model.schedule, self.steps, self.grid, self.rho), self.sigma_start)) - 1

    def prepare(self, sketches: Sequence[ImageInput], references: Sequence[References],
                hints: Sequence[Path | None] | None = None) -> Batch:
        """A batch of sketches, each with its reference (or list of references) and its hint file (None: no hints
        for that sketch)."""
        from models.denoiser import Cond  # noqa: PLC0415

        prepared = [prepare_sketch(as_rgb(s, "sketch"), self.size, self.sketch_params, self.options.sketch_type)
                    for s in sketches]
        refs, ref_mask = self._references(references)
        hint_maps = None
        if hints is not None and any(h is not None for h in hints):
            hint_maps = torch.stack([prepare_hints(h, s.letterbox) if h is not None else torch.zeros(4, self.size,
                                                                                                     self.size)
                                     for h, s in zip(hints, prepared)]).to(self.device)
        cond = Cond(torch.stack([to_tensor(s.sketch) for s in prepared]).to(self.device), refs, hint_maps, ref_mask)
        return Batch(prepared, cond)

    def sample(self, batch: Batch, seed: int, index: int = 0, callback=None) -> list[np.ndarray]:
        """The colorizations of ``batch`` (uint8 (H, W, 3), each its sketch's size) from the noise of batch
        ``index`` under ``seed``; ``callback`` sees every sampler step (a trajectory recorder)."""
        options, cond = self.options, batch.cond
        guide = options.guide_factory(cond) if options.guide_factory is not None else None
        with torch.no_grad():
            init = start_images(options.init, cond, batch.sketches, self.init_rgb, self.model.ema.net) \
                if self.sigma_start is not None else None
            result = self.model.sample(cond, steps=self.steps, sampler=self.sampler, seed=batch_seed(seed, index),
                                       guidance=self.guidance, guide=guide, callback=callback, realism=self.realism,
                                       init=init, sigma_start=self.sigma_start, grid=self.grid, rho=self.rho,
                                       **options.extra_sampler_options)
        pixels = quantize(result)
        return [s.letterbox.inverse(p.permute(1, 2, 0).numpy()) for s, p in zip(batch.sketches, pixels)]

    def colorize(self, sketch: ImageInput, reference: References, *, seed: int | None = None,
                 hints: Path | None = None) -> np.ndarray:
        """One colorization, uint8 (H, W, 3) of the sketch's size: the file ``colorize.py`` writes for this sketch
        alone with ``--seed seed`` (None: the options' seed). ``reference``: one image or a list of them.
        ``hints``: an RGBA hint file of the sketch's size."""
        batch = self.prepare([sketch], [reference], [hints])
        return self.sample(batch, self.options.seed if seed is None else seed)[0]
