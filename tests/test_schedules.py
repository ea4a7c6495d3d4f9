"""Maths identities of the phi family and the three noise schedules."""
import math

import pytest
import torch
from scipy import stats

from models.phi import CANDIDATES, get_phi, phi_grid
from models.schedules import EDMSchedule, PhiSchedule, VPSchedule, sampler_grid

SIGMA_MIN, SIGMA_MAX = 0.002, 80.0
SIGMAS = torch.logspace(math.log10(SIGMA_MIN), math.log10(SIGMA_MAX), 400, dtype=torch.float64)


@pytest.mark.parametrize("name", list(CANDIDATES))
def test_inverse_roundtrip(name):
    phi = CANDIDATES[name]
    ys = phi(SIGMAS)
    # phi(phi^-1(y)) = y wherever phi is not saturated in float64 ...
    unsaturated = torch.isfinite(phi.inverse(ys))
    assert unsaturated[:100].all(), f"{name} saturates already at small sigma"
    torch.testing.assert_close(phi(phi.inverse(ys[unsaturated])), ys[unsaturated], rtol=1e-9, atol=1e-12)
    # ... and phi^-1(phi(sigma)) = sigma where the transform still separates neighbouring sigmas.
    ok = unsaturated & (torch.gradient(ys)[0].abs() > 1e-6)
    torch.testing.assert_close(phi.inverse(ys[ok]), SIGMAS[ok], rtol=1e-5, atol=0)


@pytest.mark.parametrize("name", list(CANDIDATES))
def test_grid_is_strictly_monotone_and_even_in_phi(name):
    phi = CANDIDATES[name]
    grid = phi_grid(phi, 50, SIGMA_MIN, SIGMA_MAX)
    assert grid[0] == SIGMA_MAX and grid[-1] == SIGMA_MIN
    assert (grid[1:] < grid[:-1]).all()
    steps = torch.diff(phi(grid[1:-1]))  # interior points (the endpoints are pinned exactly)
    torch.testing.assert_close(steps, torch.full_like(steps, steps.mean().item()), rtol=1e-6, atol=1e-12)


def test_get_phi_parses_family_and_rejects_unknown():
    assert get_phi("sigma / (sigma + 0.3)").name == "sigma/(sigma+0.3)"
    assert float(get_phi("sigma/(sigma+0.25)")(torch.tensor(0.25))) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="unknown phi"):
        get_phi("cosh(sigma)")


@pytest.mark.parametrize("schedule", [PhiSchedule(), EDMSchedule(), VPSchedule()], ids=repr)
@pytest.mark.parametrize("steps", [2, 18, 50])
def test_sampler_grid_endpoints_and_order(schedule, steps):
    grid = schedule.grid(steps)
    assert len(grid) == steps + 1
    assert grid[0] == pytest.approx(schedule.sigma_max, rel=1e-6) and grid[-1] == 0
    assert grid[-2] == pytest.approx(schedule.sigma_min, rel=1e-6)
    assert (grid[1:] < grid[:-1]).all()


def test_phi_grid_evenly_spaced_in_phi():
    schedule = PhiSchedule("sigma/(sigma+0.3)")
    ys = schedule.c_noise(schedule.grid(40)[:-1].double())
    expected = torch.linspace(SIGMA_MAX / (SIGMA_MAX + 0.3), SIGMA_MIN / (SIGMA_MIN + 0.3), 40, dtype=torch.float64)
    torch.testing.assert_close(ys, expected, rtol=0, atol=1e-6)


def test_phi_training_density_is_uniform_in_phi():
    schedule = PhiSchedule("sigma/(sigma+0.3)")
    sigma = schedule.sample_sigma(20000, generator=torch.Generator().manual_seed(0)).double()
    assert sigma.min() >= SIGMA_MIN and sigma.max() <= SIGMA_MAX
    lo, hi = schedule.c_noise(torch.tensor([SIGMA_MIN, SIGMA_MAX], dtype=torch.float64))
    u = ((schedule.c_noise(sigma) - lo) / (hi - lo)).numpy()
    assert stats.kstest(u, "uniform").pvalue > 0.01
    # and clearly not uniform in sigma itself (the test would pass for any density otherwise)
    assert stats.kstest((sigma.numpy() - SIGMA_MIN) / (SIGMA_MAX - SIGMA_MIN), "uniform").pvalue < 1e-6


def test_edm_training_density_is_lognormal():
    sigma = EDMSchedule().sample_sigma(20000, generator=torch.Generator().manual_seed(0)).double()
    assert stats.kstest(sigma.log().numpy(), "norm", args=(-1.2, 1.2)).pvalue > 0.01


def test_vp_schedule_matches_ddpm_alphas():
    vp = VPSchedule()
    alpha_bar = torch.cumprod(1 - torch.linspace(1e-6, 1e-2, 1000, dtype=torch.float64), 0)
    # x_t = sqrt(abar) (x0 + sigma n)  <=>  sigma = sqrt((1 - abar) / abar)
    torch.testing.assert_close(vp.sigmas, ((1 - alpha_bar) / alpha_bar).sqrt())
    t = torch.tensor([0.0, 10.0, 500.0, 999.0], dtype=torch.float64)
    torch.testing.assert_close(vp.timestep(vp.sigmas[t.long()]), t, rtol=0, atol=1e-6)
    assert set(vp.sample_sigma(5000).tolist()) <= set(vp.sigmas.float().tolist())


def test_invalid_sigma_range_rejected():
    with pytest.raises(ValueError):
        PhiSchedule(sigma_min=1.0, sigma_max=0.5)


@pytest.mark.parametrize("schedule", [PhiSchedule(), VPSchedule(), EDMSchedule(rho=5.0)], ids=repr)
@pytest.mark.parametrize("rho", [3.0, 7.0])
def test_edm_grid_is_eq5_over_the_schedules_range(schedule, rho):
    grid = sampler_grid(schedule, 10, "edm", rho)
    assert len(grid) == 11 and grid[-1] == 0 and (grid[1:] < grid[:-1]).all()
    assert grid[0] == pytest.approx(schedule.sigma_max, rel=1e-6)
    assert grid[-2] == pytest.approx(schedule.sigma_min, rel=1e-6)
    roots = grid[:-1].double() ** (1 / rho)  # eq. 5: evenly spaced in sigma^(1/rho)
    torch.testing.assert_close(torch.diff(roots), torch.full((9,), float(torch.diff(roots).mean()),
                                                             dtype=torch.float64), rtol=1e-4, atol=0)
    same_range = EDMSchedule(rho=rho, sigma_min=schedule.sigma_min, sigma_max=schedule.sigma_max)
    assert torch.equal(grid, same_range.grid(10))  # one function: EDM's own grid


def test_phi_grid_is_the_schedules_own_and_unknown_grids_are_refused():
    for schedule in (PhiSchedule(), EDMSchedule(), VPSchedule()):
        assert torch.equal(sampler_grid(schedule, 12, "phi"), schedule.grid(12))
    assert not torch.equal(sampler_grid(PhiSchedule(), 12, "edm"), PhiSchedule().grid(12))
    with pytest.raises(ValueError, match="grid must be one of phi, edm"):
        sampler_grid(PhiSchedule(), 12, "karras")
    with pytest.raises(ValueError, match="rho must be positive"):
        sampler_grid(PhiSchedule(), 12, "edm", rho=0.0)
