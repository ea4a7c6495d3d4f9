"""The local web page of ``app.py``: upload a sketch and a reference (or several, for a model that takes them), set
the sampling options, get the colorization.

Built on Gradio, the maintained library for ML demo pages: its components cover uploads, sliders, a drawing canvas
for colour hints and progress, and its queue bounds concurrent work. Every request runs :func:`apps.colorize_jobs.colorize`
on the uploaded files, the code path of ``colorize.py`` (same checks, same preparation, same checkpoint loader), in
a fresh temporary folder that is deleted afterwards. The checkpoint comes from the command line only; a bad upload
(not an image, truncated, too large, a mode the loader cannot read) is one line on the page, never a crash. The
queue runs one colorization at a time and holds at most :data:`QUEUE_SIZE` more; beyond that a request is told the
page is busy and to retry.
"""
from __future__ import annotations

import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from utils.errors import UserError
from utils.images import image_size, load_rgb

from .colorize_jobs import colorize
from .colorizer import GRIDS, INFERENCE_SAMPLERS, INIT_KINDS, ColorizeOptions

#: Requests waiting behind the running one; more are refused with a "busy, retry" message.
QUEUE_SIZE = 4
#: Largest upload in bytes, and largest image side in pixels the page decodes.
MAX_UPLOAD = "20mb"
MAX_SIDE = 4096
#: Bounds of the per-request work.
MAX_STEPS = 50
#: Small models work at 64 px: show their images filling the boxes, pixels kept sharp.
CSS = ("#output img, #seen img, #shown-reference img, #trajectory img "
       "{width: 100%; height: 100%; object-fit: contain; image-rendering: pixelated;}")


@dataclass(frozen=True)
class PageModel:
    """What the page knows about its checkpoint (read once at start-up, for the defaults and the hint canvas)."""

    checkpoint: Path
    steps: int
    sampler: str
    grid: str
    takes_hints: bool
    guidance: tuple[float, float]


def describe_checkpoint(checkpoint: Path) -> PageModel:
    from models.checkpoint import build_model, read_checkpoint  # noqa: PLC0415 - slow imports

    model = build_model(read_checkpoint(checkpoint))
    hp = model.hparams
    sampler = "euler" if hp.sampler == "euler_diff" else hp.sampler
    return PageModel(Path(checkpoint), int(hp.steps), sampler, hp.get("grid", "phi"), bool(model.ema.takes_hints),
                     (float(hp.guidance_sketch), float(hp.guidance_reference)))


def check_upload(path: str | None, what: str) -> Path:
    """The uploaded file's path, after the header checks; a UserError naming the upload otherwise."""
    if not path:
        raise UserError(f"no {what} uploaded: drop an image on the {what} box")
    name = Path(path).name
    try:
        width, height = image_size(path)
    except UserError as err:
        raise UserError(f"the {what} ({name}) is not a readable image; upload a PNG or JPEG") from err
    if max(width, height) > MAX_SIDE:
        raise UserError(f"the {what} ({name}) is {width}x{height} px; the page takes up to {MAX_SIDE} px a side, "
                        "downscale it first")
    return Path(path)


def hint_layer(editor: dict | None) -> np.ndarray | None:
    """The strokes drawn on the hint canvas as RGBA (None when nothing is drawn)."""
    if not editor or not editor.get("layers"):
        return None
    layers = [np.asarray(layer) for layer in editor["layers"] if layer is not None]
    layers = [layer for layer in layers if layer.ndim == 3 and layer.shape[2] == 4 and layer[..., 3].any()]
    if not layers:
        return None
    out = layers[0].copy()
    for layer in layers[1:]:  # later layers on top
        out[layer[..., 3] > 0] = layer[layer[..., 3] > 0]
    return out


def reference_uploads(reference: str | list[str] | None) -> list[Path]:
    """The uploaded reference files (one or several), checked; a UserError naming the bad one otherwise."""
    given = [reference] if isinstance(reference, str) else [r for r in (reference or []) if r]
    if not given:
        raise UserError("no reference uploaded: drop an image (or several drawings of the character) on the "
                        "reference box")
    return [check_upload(path, "reference" if len(given) == 1 else f"reference {k + 1}")
            for k, path in enumerate(given)]


def reference_strip(references: list[Path], height: int = 128) -> np.ndarray:
    """The uploaded references side by side at one height, for the page to show what it was given."""
    tiles = []
    for path in references:
        rgb = load_rgb(path)
        width = max(1, round(rgb.shape[1] * height / rgb.shape[0]))
        tiles.append(np.asarray(Image.fromarray(rgb).resize((width, height), Image.BILINEAR)))
    return np.concatenate(tiles, axis=1)


def run_request(page: PageModel, sketch: str | None, reference: str | list[str] | None, hints: dict | None,
                sampler: str, grid: str, steps: float, guidance_sketch: float, guidance_reference: float,
                guidance_ssim: float, seed: float, realism: float, sigma_start: float, init: str):
    """One colorization: (output, sketch seen, trajectory grid, status line). ``reference``: one upload or a list
    of them (a character sheet, for a model that takes several)."""
    from models.ssim_guidance import check_scale, ssim_guide  # noqa: PLC0415

    work = Path(tempfile.mkdtemp(prefix="ssimbad-page-"))
    try:
        sketch_path = check_upload(sketch, "sketch")
        reference_paths = reference_uploads(reference)
        # Fixed names: an upload's own name never reaches a path of ours.
        (work / "in").mkdir()
        local_sketch = work / "in" / f"sketch{sketch_path.suffix.lower() or '.png'}"
        local_references = [work / "in" / f"reference{k}{path.suffix.lower() or '.png'}"
                            for k, path in enumerate(reference_paths)]
        shutil.copyfile(sketch_path, local_sketch)
        for path, local in zip(reference_paths, local_references):
            shutil.copyfile(path, local)
        layer = hint_layer(hints) if page.takes_hints else None
        hint_file = None
        if layer is not None:
            hint_file = work / "hints.png"
            Image.fromarray(layer, "RGBA").save(hint_file)
        check_scale(guidance_ssim, "SSIM guidance")
        scale = float(guidance_ssim)
        options = ColorizeOptions(
            steps=int(min(max(steps, 1), MAX_STEPS)), sampler=sampler, grid=grid,
            guidance_sketch=float(guidance_sketch), guidance_reference=float(guidance_reference), seed=int(seed),
            batch_size=1, save_trajectory=True,
            realism=float(realism), sigma_start=float(sigma_start) if sigma_start and sigma_start > 0 else None,
            init=init, hints=hint_file, progress=True,
            guide_factory=(lambda cond: ssim_guide(scale, cond.sketch)) if scale else None,
        )
        result = colorize(page.checkpoint, local_sketch, local_references, work / "out", options,
                          trajectory_dir=work / "trajectory")
        output = load_rgb(work / "out" / "sketch.png")
        trajectory = load_rgb(work / "trajectory" / "sketch.png")
        seen = trajectory[2:2 + result.size, 2:2 + result.size]  # the first tile: the sketch the model saw
        status = (f"done: {result.sampler}, {result.grid} grid, {result.steps} steps, {result.size}x{result.size} px, "
                  f"seed {int(seed)}" + (f", {len(local_references)} references" if len(local_references) > 1 else "")
                  + (" (the upload was a colour image: its sketch was extracted with XDoG)" if result.converted
                     else ""))
        return output, seen, trajectory, status
    except UserError as err:
        return None, None, None, f"error: {err}"
    finally:
        shutil.rmtree(work, ignore_errors=True)


def build_page(page: PageModel):
    """The Gradio Blocks of the page (not launched)."""
    import gradio as gr  # noqa: PLC0415 - only the page needs it

    # Uploads and results in Gradio's cache are deleted after an hour (checked every 10 minutes).
    with gr.Blocks(title="SSIMBaD colorization", delete_cache=(600, 3600)) as blocks:
        gr.Markdown(f"## Reference-based sketch colorization\nCheckpoint: `{page.checkpoint}`. Drop a sketch (or a "
                    "colour image, turned into a sketch with XDoG) and a reference, then press Colorize.")
        with gr.Row():
            sketch = gr.File(label="Sketch", file_types=["image"], type="filepath", elem_id="sketch")
            reference = gr.File(label="Reference: one image, or several drawings of the character (a model trained "
                                "with configs/variants/multiref.yaml combines them)", file_types=["image"],
                                file_count="multiple", type="filepath", elem_id="reference")
        hints = gr.ImageEditor(label="Colour hints: draw strokes of colour over the sketch", type="numpy",
                               visible=page.takes_hints, elem_id="hints")
        with gr.Accordion("Sampling", open=True):
            with gr.Row():
                sampler = gr.Dropdown(list(INFERENCE_SAMPLERS), value=page.sampler, label="Sampler")
                grid = gr.Radio(list(GRIDS), value=page.grid, label="Grid (phi: the schedule's own; edm: EDM's rho "
                                "grid)", elem_id="grid")
                steps = gr.Slider(1, MAX_STEPS, value=page.steps, step=1, label="Steps")
                seed = gr.Number(value=0, precision=0, label="Seed")
            with gr.Row():
                g_sketch = gr.Slider(0, 5, value=page.guidance[0], step=0.1, label="Guidance: sketch")
                g_reference = gr.Slider(0, 5, value=page.guidance[1], step=0.1, label="Guidance: reference")
                g_ssim = gr.Slider(0, 30, value=0, step=0.5, label="SSIM guidance (10: the 64 px demo's best)")
            with gr.Row():
                realism = gr.Slider(0, 1, value=0, step=0.05, label="Realism (0: follow the lines)")
                sigma_start = gr.Number(value=0, label="Noise start sigma (0: pure noise)")
                init = gr.Dropdown(list(INIT_KINDS), value="reference", label="Noise start from")
        run = gr.Button("Colorize", variant="primary", elem_id="run")
        status = gr.Markdown(elem_id="status")
        with gr.Row():
            output = gr.Image(label="Colorization", type="numpy", format="png", height=288, elem_id="output")
            seen = gr.Image(label="Sketch the model saw", type="numpy", format="png", height=288, elem_id="seen")
            shown_reference = gr.Image(label="Reference(s)", type="numpy", height=288, interactive=False,
                                       elem_id="shown-reference")
        trajectory = gr.Image(label="Trajectory: states (top) and x0 predictions (bottom)", type="numpy",
                              format="png", height=256, elem_id="trajectory")  # each image has a download button

        def colorize_page(*args, progress=gr.Progress(track_tqdm=True)):
            return run_request(page, *args)

        def fill_canvas(path):
            try:
                return load_rgb(check_upload(path, "sketch")) if path else None
            except UserError:
                return None

        def show_references(paths):
            try:
                return reference_strip(reference_uploads(paths)) if paths else None
            except UserError:
                return None

        if page.takes_hints:
            sketch.change(fill_canvas, sketch, hints)
        reference.change(show_references, reference, shown_reference)
        run.click(colorize_page,
                  [sketch, reference, hints, sampler, grid, steps, g_sketch, g_reference, g_ssim, seed, realism,
                   sigma_start, init],
                  [output, seen, trajectory, status], api_name="colorize")
    blocks.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)
    return blocks


def launch(page: PageModel, host: str, port: int) -> None:
    import gradio as gr  # noqa: PLC0415

    theme = gr.themes.Base(font=["sans-serif"], font_mono=["monospace"])  # no web fonts: the page works offline
    build_page(page).launch(server_name=host, server_port=port, max_file_size=MAX_UPLOAD, ssr_mode=False,
                            theme=theme, css=CSS, quiet=False)
