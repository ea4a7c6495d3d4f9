"""Sampling controls (models/controls.py): realism low-pass and adjustable noise start; neutral values are no-ops."""
import math

import pytest
import torch

from conftest import acting_model_and_cond
from models.controls import lowpass_sketch, realism_size, start_grid
from models.denoiser import Cond
from models.sampling import sample
from models.schedules import PhiSchedule
from test_samplers import gaussian_denoiser


def test_realism_size_runs_from_full_size_to_an_eighth():
    assert realism_size(64, 0.0) == 64 and realism_size(64, 1.0) == 8 and realism_size(64, 0.5) == 23
    sizes = [realism_size(256, s / 10) for s in range(11)]
    assert sizes == sorted(sizes, reverse=True) and len(set(sizes)) == 11
    with pytest.raises(ValueError, match="realism"):
        realism_size(64, 1.5)


def test_lowpass_keeps_flat_images_and_removes_lines():
    flat = torch.full((1, 1, 32, 32), 0.25)
    torch.testing.assert_close(lowpass_sketch(flat, 1.0), flat)
    lines = torch.ones(1, 1, 32, 32)
    lines[..., ::4, :] = -1.0  # a black line every 4 px: above the 4-px low-pass at realism 1
    assert lowpass_sketch(lines, 0.0) is lines
    smooth = lowpass_sketch(lines, 1.0)
    assert smooth.shape == lines.shape and smooth.std() < 0.1 * lines.std()
    torch.testing.assert_close(smooth.mean(), lines.mean())  # area averaging keeps the ink


def test_start_grid_truncates_and_is_plain_at_sigma_max():
    grid = PhiSchedule().grid(10)
    assert start_grid(grid, None) is grid and start_grid(grid, 80.0) is grid and start_grid(grid, 500.0) is grid
    short = start_grid(grid, 2.0)
    assert short[0] == 2.0 and short[-1] == 0 and torch.all(short[1:] < 2.0) and torch.all(short.diff() < 0)
    assert len(short) - 1 == 1 + int((grid[:-1] < 2.0).sum())  # network evaluations of Euler on it
    with pytest.raises(ValueError, match="positive"):
        start_grid(grid, 0.0)


def test_noise_start_on_the_analytic_gaussian():
    """Data y ~ N(mu, s^2): the probability-flow ODE from x at sigma_start ends at mu + s (x - mu) /
    sqrt(s^2 + sigma_start^2), with x = init + sigma_start n the noised initial image."""
    mu, s, sigma_start = 0.3, 0.5, 2.0
    init = torch.linspace(-1, 1, 64, dtype=torch.float64).reshape(1, 1, 8, 8).expand(1, 3, 8, 8)
    cond = Cond(torch.zeros(1, 1, 8, 8, dtype=torch.float64), torch.zeros(1, 3, 8, 8, dtype=torch.float64))
    out = sample(gaussian_denoiser(mu, s), PhiSchedule(), cond, 400, "heun", seed=0, init=init,
                 sigma_start=sigma_start)
    noise = torch.randn((1, 3, 8, 8), generator=torch.Generator().manual_seed(0)).double()
    expected = mu + s * (init + sigma_start * noise - mu) / math.sqrt(s**2 + sigma_start**2)
    torch.testing.assert_close(out, expected.float(), rtol=0, atol=1e-3)


@pytest.fixture(scope="module")
def model_and_cond():
    return acting_model_and_cond(steps=4, sampler="euler")


def test_neutral_values_are_todays_output_bit_for_bit(model_and_cond):
    model, cond = model_and_cond
    with torch.no_grad():
        plain = model.sample(cond, seed=3)
        torch.testing.assert_close(model.sample(cond, seed=3, realism=0.0), plain, rtol=0, atol=0)
        torch.testing.assert_close(model.sample(cond, seed=3, sigma_start=80.0), plain, rtol=0, atol=0)
        assert not torch.equal(model.sample(cond, seed=3, realism=1.0), plain)
        assert not torch.equal(model.sample(cond, seed=3, sigma_start=1.0), plain)


def test_noise_start_costs_fewer_evaluations_and_keeps_the_init(model_and_cond):
    model, cond = model_and_cond
    calls = []
    hook = model.ema.register_forward_pre_hook(lambda m, args: calls.append(float(args[1].reshape(-1)[0])))
    try:
        with torch.no_grad():
            model.sample(cond, seed=0, steps=8)
            full = len(calls)
            calls.clear()
            near = model.sample(cond, seed=0, steps=8, sigma_start=1e-3, init=cond.reference)
    finally:
        hook.remove()
    assert full == 8 and calls == [pytest.approx(1e-3)]  # below the grid's last point: one evaluation
    assert (near - cond.reference).abs().max() < 0.05  # from 0.001 of noise the result stays the init


def test_sigma_start_without_an_image_is_an_error(model_and_cond):
    _, cond = model_and_cond
    with pytest.raises(ValueError, match="init"):
        sample(gaussian_denoiser(0.0, 0.5), PhiSchedule(), cond, 4, "euler", sigma_start=1.0)


def test_training_sketches_can_be_low_passed_like_the_realism_control(faces):
    from data.dataset import Pipeline, TrainDataset
    from data.folder import scan_folder

    entries = scan_folder(faces)
    plain = TrainDataset(entries, Pipeline(size=16))[5]
    soft = TrainDataset(entries, Pipeline(size=16, sketch_lowpass=1.0))[5]
    assert torch.equal(plain["target"], soft["target"]) and torch.equal(plain["reference"], soft["reference"])
    assert not torch.equal(plain["sketch"], soft["sketch"])
    assert soft["sketch"].diff(dim=-1).abs().mean() < plain["sketch"].diff(dim=-1).abs().mean()  # smoother
