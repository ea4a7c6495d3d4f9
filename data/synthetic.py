"""Demo dataset: procedural cel-shaded cartoon faces, so the framework can be tried without downloading anything.

Each face is drawn from one seed: flat colour regions (background, back hair, body and collar, neck with a cel shadow,
face, eyes with iris, pupil and highlights, brows, mouth, optional blush, front hair with bangs, side locks and a
highlight band, optional ribbon) with dark outlines, as in anime cel shading. Shapes (face width, chin, hair length,
number of bangs, eye size and spacing, mouth) and the palette (hair, skin, eyes, clothes, background) are random, so
colouring a sketch from a reference is a meaningful task: the sketch fixes the shapes, only the reference tells the
colours. Drawing happens on a 4x larger canvas that is then area-downsampled (anti-aliasing).

Usage: ``python -m data.synthetic --out DIR --count N [--size 64] [--seed 0] [--overwrite]`` writes
``face_00000.png`` ... (image i is ``render_face`` of a seed derived from (seed, i)).
"""
from __future__ import annotations

import argparse
import colorsys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

from utils.errors import UserError, exit_on_user_error
from utils.outputs import check_output_folder
from utils.images import save_image

#: Drawing resolution relative to the output size.
SUPERSAMPLE = 4
Color = tuple[int, int, int]
Point = tuple[float, float]
BLUSH: Color = (255, 110, 130)


def _hsv(h: float, s: float, v: float) -> Color:
    r, g, b = colorsys.hsv_to_rgb(h % 1.0, min(max(s, 0.0), 1.0), min(max(v, 0.0), 1.0))
    return (round(r * 255), round(g * 255), round(b * 255))


def _mix(a: Color, b: Color, t: float) -> Color:
    return tuple(round(x + (y - x) * t) for x, y in zip(a, b))  # type: ignore[return-value]


def _shade(color: Color, factor: float) -> Color:
    """Same hue, value scaled by ``factor`` (cel shadow < 1 < highlight)."""
    h, s, v = colorsys.rgb_to_hsv(*(c / 255 for c in color))
    return _hsv(h, s * (1.05 if factor < 1 else 0.7), v * factor)


@dataclass(frozen=True)
class Palette:
    background: Color
    skin: Color
    hair: Color
    eyes: Color
    clothes: Color
    collar: Color
    mouth: Color
    outline: Color

    @staticmethod
    def random(rng: np.random.Generator) -> Palette:
        skin_tones = [(255, 224, 200), (250, 210, 180), (240, 200, 170), (225, 180, 150), (190, 140, 110)]
        skin = skin_tones[rng.integers(len(skin_tones))]
        jitter = rng.integers(-8, 9, size=3)
        return Palette(
            background=_hsv(rng.random(), rng.uniform(0.1, 0.5), rng.uniform(0.75, 1.0)),
            skin=tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(skin, jitter)),  # type: ignore[arg-type]
            hair=_hsv(rng.random(), rng.uniform(0.2, 0.95), rng.uniform(0.25, 0.95)),
            eyes=_hsv(rng.random(), rng.uniform(0.5, 1.0), rng.uniform(0.45, 0.9)),
            clothes=_hsv(rng.random(), rng.uniform(0.3, 0.9), rng.uniform(0.3, 0.9)),
            collar=_hsv(rng.random(), rng.uniform(0.0, 0.4), rng.uniform(0.85, 1.0)),
            mouth=_hsv(rng.uniform(-0.03, 0.03), rng.uniform(0.4, 0.7), rng.uniform(0.6, 0.85)),
            outline=_hsv(rng.random(), 0.3, rng.uniform(0.08, 0.2)),
        )


class _Canvas:
    """An RGB canvas addressed in unit coordinates (0..1 across), with outlined flat fills."""

    def __init__(self, side: int, background: Color, outline: Color) -> None:
        self.side = side
        self.img = np.empty((side, side, 3), np.uint8)
        self.img[:] = background
        self.outline = outline
        self.line = max(2, round(side * 0.012))

    def _px(self, points: np.ndarray) -> np.ndarray:
        return np.round(np.asarray(points) * self.side * 16).astype(np.int32)  # 4 fractional bits (shift=4)

    def poly(self, points: np.ndarray, fill: Color, outlined: bool = True) -> None:
        pts = self._px(points)
        cv2.fillPoly(self.img, [pts], fill, cv2.LINE_AA, shift=4)
        if outlined:
            cv2.polylines(self.img, [pts], True, self.outline, self.line, cv2.LINE_AA, shift=4)

    def stroke(self, points: np.ndarray, color: Color | None = None, width: float = 1.0) -> None:
        pts = self._px(points)
        cv2.polylines(self.img, [pts], False, color or self.outline, max(1, round(self.line * width)), cv2.LINE_AA, 4)

    def ellipse(self, center: Point, axes: Point, fill: Color, outlined: bool = True) -> None:
        self.poly(ellipse_points(center, axes), fill, outlined)

    def copy(self) -> _Canvas:
        other = _Canvas.__new__(_Canvas)
        other.__dict__.update(self.__dict__, img=self.img.copy())
        return other

    def mask(self, points: np.ndarray) -> np.ndarray:
        m = np.zeros((self.side, self.side), np.uint8)
        cv2.fillPoly(m, [self._px(points)], 255, cv2.LINE_8, shift=4)
        return m > 0


def ellipse_points(center: Point, axes: Point, start: float = 0.0, end: float = 360.0, n: int = 64) -> np.ndarray:
    """(n, 2) points of an axis-aligned ellipse arc in unit coordinates; angles in degrees from +x towards +y
    (screen y points down: 90 is the bottom, 270 or -90 the top)."""
    t = np.radians(np.linspace(start, end, n))
    return np.stack([center[0] + axes[0] * np.cos(t), center[1] + axes[1] * np.sin(t)], 1)


def _face_outline(cx: float, cy: float, rx: float, ry: float, chin: float) -> np.ndarray:
    """Face contour: round cranium, jaw narrowing to a chin (``chin`` in [0, 1] = pointiness)."""
    t = np.linspace(0, 2 * np.pi, 96, endpoint=False)
    lower = np.clip(np.cos(t), 0, None)  # 1 at the chin (t = 0 points down)
    x = cx + rx * np.sin(t) * (1 - chin * lower**1.5)
    y = cy + ry * np.cos(t)
    return np.stack([x, y], 1)


def _bangs(cx: float, top: float, left: float, right: float, tips: np.ndarray, valley: float) -> np.ndarray:
    """Front hair: an arc over the head closed by a zigzag of strands ending at ``tips`` (y of each tip)."""
    n = len(tips)
    xs = np.linspace(left, right, 2 * n + 1)
    zigzag = [(xs[0], valley)]
    for i in range(n):
        zigzag.append((xs[2 * i + 1], tips[i]))
        zigzag.append((xs[2 * i + 2], valley))
    cap = ellipse_points((cx, valley), ((right - left) / 2, valley - top), start=0, end=-180, n=48)
    return np.concatenate([np.array(zigzag), cap])


def _eye(canvas: _Canvas, pal: Palette, center: Point, w: float, h: float, rng: np.random.Generator, side: int) -> None:
    """White of the eye; iris, its cel shadow, pupil and highlight clipped to it; thick upper and thin lower lid."""
    sclera = ellipse_points(center, (w, h))
    canvas.poly(sclera, (255, 255, 255), outlined=False)
    inside = canvas.mask(sclera)
    layer = canvas.copy()
    iris_c = (center[0] + side * w * rng.uniform(-0.15, 0.15), center[1] + h * 0.1)
    layer.ellipse(iris_c, (w * 0.62, h * 0.95), pal.eyes, outlined=False)
    layer.ellipse(iris_c, (w * 0.62, h * 0.45), _shade(pal.eyes, 0.7), outlined=False)  # cel shadow, upper iris
    layer.ellipse((iris_c[0], iris_c[1] + h * 0.05), (w * 0.3, h * 0.45), _shade(pal.eyes, 0.35), outlined=False)
    layer.ellipse((iris_c[0] - w * 0.25, iris_c[1] - h * 0.35), (w * 0.18, h * 0.2), (255, 255, 255), outlined=False)
    canvas.img[inside] = layer.img[inside]
    canvas.stroke(ellipse_points(center, (w * 1.08, h * 1.05), start=190, end=350, n=24), width=1.8)  # upper lid
    canvas.stroke(ellipse_points(center, (w * 0.8, h), start=40, end=140, n=16), width=0.7)  # lower lid


def render_face(seed: int, size: int = 64) -> np.ndarray:
    """One random cel-shaded cartoon face: uint8 RGB (size, size, 3), a pure function of (seed, size)."""
    if size < 8:
        raise ValueError(f"size must be at least 8 pixels, got {size}")
    rng = np.random.default_rng(seed)
    pal = Palette.random(rng)
    c = _Canvas(size * SUPERSAMPLE, pal.background, pal.outline)
    cx, cy = 0.5 + rng.uniform(-0.03, 0.03), 0.47 + rng.uniform(-0.03, 0.03)
    rx, ry = rng.uniform(0.2, 0.26), rng.uniform(0.25, 0.3)
    hair_len = rng.uniform(0.55, 1.1)  # bottom of the back hair, unit coordinates
    hair_shadow = _shade(pal.hair, 0.72)

    # back hair, behind everything: a dome widening into locks down to hair_len
    back_w = rx * rng.uniform(1.3, 1.55)
    dome = ellipse_points((cx, cy - ry * 0.15), (back_w, ry * 1.2), start=180, end=360, n=40)
    ends = np.array([[cx + back_w * 1.05, cy + hair_len - 0.47], [cx, cy + hair_len - 0.5 + rng.uniform(0, 0.05)],
                     [cx - back_w * 1.05, cy + hair_len - 0.47]])
    c.poly(np.concatenate([dome, ends]), hair_shadow)

    # body with collar, then neck with the chin's cel shadow
    shoulder = rng.uniform(0.32, 0.45)
    body_top = cy + ry * 1.12
    c.poly(np.array([[cx - 0.08, body_top], [cx + 0.08, body_top], [cx + shoulder, body_top + 0.12],
                     [cx + shoulder + 0.06, 1.05], [cx - shoulder - 0.06, 1.05], [cx - shoulder, body_top + 0.12]]),
           pal.clothes)
    c.poly(np.array([[cx - 0.1, body_top], [cx + 0.1, body_top], [cx, body_top + rng.uniform(0.1, 0.2)]]), pal.collar)
    neck_w = rx * 0.38
    c.poly(np.array([[cx - neck_w, cy + ry * 0.6], [cx + neck_w, cy + ry * 0.6], [cx + neck_w, body_top + 0.03],
                     [cx, body_top + 0.07], [cx - neck_w, body_top + 0.03]]), pal.skin)
    c.ellipse((cx, cy + ry * 0.95), (neck_w, ry * 0.22), _shade(pal.skin, 0.82), outlined=False)

    # face
    c.poly(_face_outline(cx, cy, rx, ry, rng.uniform(0.3, 0.7)), pal.skin)
    if rng.random() < 0.5:
        for side in (-1, 1):
            c.ellipse((cx + side * rx * 0.55, cy + ry * 0.35), (rx * 0.18, ry * 0.06), _mix(pal.skin, BLUSH, 0.4),
                      outlined=False)

    # eyes and brows
    eye_dx, eye_y = rx * rng.uniform(0.42, 0.55), cy + ry * rng.uniform(0.05, 0.2)
    eye_w, eye_h = rx * rng.uniform(0.22, 0.3), ry * rng.uniform(0.16, 0.24)
    for side in (-1, 1):
        _eye(c, pal, (cx + side * eye_dx, eye_y), eye_w, eye_h, rng, side)
        brow = ellipse_points((cx + side * eye_dx, eye_y - eye_h * 1.6), (eye_w * 1.1, eye_h * 0.5), start=200, end=340,
                              n=12)
        c.stroke(brow, _shade(pal.hair, 0.5), width=1.0)

    # nose and mouth
    c.stroke(np.array([[cx, eye_y + eye_h * 1.5], [cx - rx * 0.03, eye_y + eye_h * 1.9]]), width=0.7)
    mouth_y, mouth_w = cy + ry * rng.uniform(0.58, 0.68), rx * rng.uniform(0.12, 0.25)
    if rng.random() < 0.5:
        c.stroke(ellipse_points((cx, mouth_y - ry * 0.05), (mouth_w, ry * 0.06), start=20, end=160, n=16), width=0.9)
    else:
        c.poly(ellipse_points((cx, mouth_y), (mouth_w * 0.8, ry * 0.07), start=0, end=180, n=20), pal.mouth)

    # front hair: cap with bangs, side locks, highlight band
    n_strands = int(rng.integers(4, 8))
    tips = cy - ry * rng.uniform(0.05, 0.5, size=n_strands)
    left, right = cx - rx * 1.15, cx + rx * 1.15
    for side in (-1, 1):
        x0 = cx + side * rx * 1.12
        c.poly(np.array([[x0, cy - ry * 0.6], [x0 - side * rx * 0.35, cy - ry * 0.5],
                         [x0 - side * rx * 0.15, cy + ry * rng.uniform(0.6, 1.1)], [x0 + side * 0.02, cy + ry * 0.3]]),
               pal.hair)
    c.poly(_bangs(cx, cy - ry * 1.22, left, right, tips, cy - ry * 0.7), pal.hair)
    c.stroke(ellipse_points((cx, cy - ry * 0.75), (rx * 0.8, ry * 0.3), start=205, end=335, n=20),
             _shade(pal.hair, 1.35), width=1.6)
    if rng.random() < 0.4:
        bow = (cx + rng.choice([-1, 1]) * rx * 0.8, cy - ry * 1.0)
        for side in (-1, 1):
            c.poly(np.array([bow, (bow[0] + side * 0.08, bow[1] - 0.05), (bow[0] + side * 0.08, bow[1] + 0.05)]),
                   pal.clothes)
    return cv2.resize(c.img, (size, size), interpolation=cv2.INTER_AREA)


def face_seed(seed: int, index: int) -> int:
    """Seed of image ``index`` of a demo set made with ``seed``."""
    return int(np.random.SeedSequence([seed, index]).generate_state(1)[0])


def prepare_output(out: Path, overwrite: bool) -> None:
    """Create ``out``; a non-empty folder is refused unless ``overwrite`` (then earlier faces are removed)."""
    if check_output_folder(out, overwrite, "replace earlier faces"):
        for old in out.glob("face_*.png"):
            old.unlink()
    out.mkdir(parents=True, exist_ok=True)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m data.synthetic",
        description="Write a demo data set of procedural cel-shaded cartoon faces (PNG), reproducible from --seed.",
    )
    parser.add_argument("--out", required=True, type=Path, help="output folder (created; must be empty)")
    parser.add_argument("--count", required=True, type=int, help="number of faces to write")
    parser.add_argument("--size", type=int, default=64, help="side of the square images in pixels (default 64)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the whole set; same seed, same files (default 0)")
    parser.add_argument("--overwrite", action="store_true",
                        help="write into a non-empty --out, removing earlier face_*.png files first")
    return parser


@exit_on_user_error
def main(argv: list[str] | None = None) -> None:
    args = build_parser().parse_args(argv)
    if args.count < 1 or args.size < 8:
        raise UserError(f"need --count >= 1 and --size >= 8 (got {args.count}, {args.size})")
    prepare_output(args.out, args.overwrite)
    for i in tqdm(range(args.count), desc="faces", unit="img"):
        save_image(render_face(face_seed(args.seed, i), args.size), args.out / f"face_{i:05d}.png")
    print(f"wrote {args.count} faces of {args.size}x{args.size} to {args.out}")


if __name__ == "__main__":
    main()
