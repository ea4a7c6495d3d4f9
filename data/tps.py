"""Thin-plate-spline warp: the reference R = TPS-warp(I_gt) of the training triplets and of the same-reference test.

A thin-plate spline (Bookstein 1989, "Principal warps", eqs. 1-4) is the smooth map f: R^2 -> R^2 of minimal
bending energy that sends control points c_i to targets t_i:

    f(x) = a_0 + a_1 x + a_2 y + sum_i w_i U(|x - c_i|),   U(r) = r^2 log r^2,

with (w, a) solving the (N + 3) x (N + 3) linear system [[K, P], [P^T, 0]] [w; a] = [t; 0], K_ij = U(|c_i - c_j|),
P_i = (1, x_i, y_i). Here the c_i are a regular grid over the image in normalised coordinates [-1, 1]^2, the t_i are
the c_i moved by uniform random offsets, and an optional rotation about the centre is composed on top. f is a
backward map (output pixel -> source position): it is evaluated on a coarse lattice (the spline is smooth, so
bilinear upsampling of the map costs nothing visible) and the image is resampled with ``cv2.remap``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

#: The map is evaluated exactly on at most this many lattice points per side, then upsampled bilinearly.
MAP_LATTICE = 65


@dataclass(frozen=True)
class TPSParams:
    """Random TPS warp: ``grid`` x ``grid`` control points, each moved by up to ``shift`` of the image side along
    x and y, then a rotation of up to ``rotation`` degrees about the centre (0 disables it)."""

    grid: int = 5
    shift: float = 0.05
    rotation: float = 10.0

    def __post_init__(self) -> None:
        if self.grid < 2:
            raise ValueError(f"TPS grid must be at least 2 control points per side, got {self.grid}")
        if self.shift < 0 or self.rotation < 0:
            raise ValueError(f"TPS shift and rotation must be >= 0, got {self.shift}, {self.rotation}")

    def apply(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """``img`` warped by a random TPS drawn from ``rng``."""
        return random_tps_warp(img, rng, self)


def _kernel(r2: np.ndarray) -> np.ndarray:
    """U(r) = r^2 log r^2, written on squared distances; U(0) = 0 (0 times a finite log)."""
    return r2 * np.log(np.maximum(r2, 1e-30))


def _pairwise_sq(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Squared distances |a_i - b_j|^2, (M, N)."""
    return (a[:, 0:1] - b[:, 0]) ** 2 + (a[:, 1:2] - b[:, 1]) ** 2


def fit_tps(src: np.ndarray, dst: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Spline coefficients (w (N, 2), a (3, 2)) of the TPS sending points ``src`` (N, 2) to ``dst`` (N, 2)."""
    n = len(src)
    p = np.concatenate([np.ones((n, 1)), src], axis=1)
    system = np.zeros((n + 3, n + 3))
    system[:n, :n] = _kernel(_pairwise_sq(src, src))
    system[:n, n:] = p
    system[n:, :n] = p.T
    rhs = np.zeros((n + 3, 2))
    rhs[:n] = dst
    coef = np.linalg.solve(system, rhs)
    return coef[:n], coef[n:]


def eval_tps(points: np.ndarray, src: np.ndarray, w: np.ndarray, a: np.ndarray) -> np.ndarray:
    """f(points) for the spline (src, w, a); points (M, 2) -> (M, 2)."""
    affine = a[0] + points @ a[1:]
    return affine + _kernel(_pairwise_sq(points, src)) @ w


def tps_map(
    height: int, width: int, src: np.ndarray, dst: np.ndarray, rotation_deg: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """Backward maps (map_x, map_y) in pixels, float32 (H, W), for ``cv2.remap``.

    Output pixel x (normalised) samples the input at R(f(x)), where f is the TPS sending ``src`` to ``dst`` and R
    a rotation about the centre by ``rotation_deg``.
    """
    w, a = fit_tps(src, dst)
    lat_h, lat_w = min(height, MAP_LATTICE), min(width, MAP_LATTICE)
    ys, xs = np.meshgrid(np.linspace(-1, 1, lat_h), np.linspace(-1, 1, lat_w), indexing="ij")
    lattice = np.stack([xs.ravel(), ys.ravel()], axis=1)
    mapped = eval_tps(lattice, src, w, a)
    if rotation_deg:
        t = math.radians(rotation_deg)
        rot = np.array([[math.cos(t), -math.sin(t)], [math.sin(t), math.cos(t)]])
        mapped = mapped @ rot.T
    # normalised [-1, 1] (pixel centres of the first and last column) -> pixel coordinates
    mx = ((mapped[:, 0] + 1) * 0.5 * (width - 1)).reshape(lat_h, lat_w).astype(np.float32)
    my = ((mapped[:, 1] + 1) * 0.5 * (height - 1)).reshape(lat_h, lat_w).astype(np.float32)
    if (lat_h, lat_w) != (height, width):
        mx = _upsample(mx, height, width)
        my = _upsample(my, height, width)
    return mx, my


def _upsample(m: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear upsampling that keeps the corner samples on the corner pixels (align-corners)."""
    lat_h, lat_w = m.shape
    fy = np.linspace(0, lat_h - 1, height, dtype=np.float32)
    fx = np.linspace(0, lat_w - 1, width, dtype=np.float32)
    gx, gy = np.meshgrid(fx, fy)
    return cv2.remap(m, gx, gy, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)


def control_grid(n: int) -> np.ndarray:
    """n x n regular control points over [-1, 1]^2, as (n * n, 2) (x, y)."""
    ys, xs = np.meshgrid(np.linspace(-1, 1, n), np.linspace(-1, 1, n), indexing="ij")
    return np.stack([xs.ravel(), ys.ravel()], axis=1)


def random_tps_warp(img: np.ndarray, rng: np.random.Generator, params: TPSParams = TPSParams()) -> np.ndarray:
    """``img`` (H, W[, C]) warped by a TPS with random control-point offsets and rotation drawn from ``rng``."""
    src = control_grid(params.grid)
    # ``shift`` is a fraction of the image side, and the side spans 2 units in normalised coordinates.
    dst = src + rng.uniform(-2 * params.shift, 2 * params.shift, size=src.shape)
    angle = float(rng.uniform(-params.rotation, params.rotation)) if params.rotation else 0.0
    h, w = img.shape[:2]
    mx, my = tps_map(h, w, src, dst, angle)
    return cv2.remap(img, mx, my, interpolation=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT_101)
