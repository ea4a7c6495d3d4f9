"""Samplers on the exact denoiser of Gaussian data, where the answer is known in closed form."""
import math

import pytest
import torch

from models.solvers import get_sampler, sample_euler, sample_euler_ancestral, sample_euler_diff, sample_heun
from models.schedules import EDMSchedule, PhiSchedule, VPSchedule


def gaussian_denoiser(mu, s):
    """E[y | y + sigma n = x] for y ~ N(mu, s^2): (s^2 x + sigma^2 mu) / (s^2 + sigma^2)."""

    def denoise(x, sigma, cond=None):
        sigma = torch.as_tensor(sigma, dtype=x.dtype)
        return (s**2 * x + sigma**2 * mu) / (s**2 + sigma**2)

    return denoise


def draw(schedule, steps, sampler, mu, s, n=100_000, seed=0):
    sigmas = schedule.grid(steps).double()
    z = torch.randn(n, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    x = (z - z.mean()) / z.std() * sigmas[0]  # moment-matched noise: the test measures the sampler, not sampling error
    return get_sampler(sampler)(gaussian_denoiser(mu, s), x, sigmas, None)


def test_heun_35_nfe_matches_gaussian_on_phi_grid():
    """18 Heun steps = 35 evaluations. The phi grid concentrates steps at small sigma, so it resolves data whose
    std is of order c = 0.3 or below at this budget; the error at s = sigma_data is measured in the next test."""
    mu, s = 0.3, 0.1
    out = draw(PhiSchedule(), 18, "heun", mu, s)
    assert abs(out.mean() / mu - 1) < 0.02 and abs(out.std() / s - 1) < 0.02


@pytest.mark.parametrize("schedule", [PhiSchedule(), EDMSchedule()], ids=repr)
@pytest.mark.parametrize("sampler,order", [("heun", 2), ("euler", 1)])
def test_convergence_order_on_gaussian(schedule, sampler, order):
    """The std error of the ODE solution shrinks like h^order: x4 per doubling for Heun, x2 for Euler."""
    errors = ode_errors(schedule, sampler)
    ratios = [errors[i] / errors[i + 1] for i in range(2)]
    assert all(r > 2**order * 0.85 for r in ratios), (errors, ratios)
    assert errors[-1] < 0.02


def ode_errors(schedule, sampler, steps=(50, 100, 200)):
    """Relative error of the ODE solution for one starting point, N(0, 0.5^2) data, at each step count."""
    mu, s, errors = 0.0, 0.5, []
    for n in steps:
        sigmas = schedule.grid(n).double()
        x = torch.ones(1, dtype=torch.float64) * sigmas[0]
        exact = sigmas[0] * s / math.sqrt(s**2 + float(sigmas[0]) ** 2)
        errors.append(abs(float(get_sampler(sampler)(gaussian_denoiser(mu, s), x, sigmas, None)) / exact - 1))
    return errors


def test_dpmpp_2m_is_second_order_and_beats_euler_at_equal_cost():
    """x4 per doubling on the EDM grid; on the phi grid its first, first-order step is long in ln(sigma) (80 -> 12
    at 50 steps) and shrinks slowly, so the observed order is lower there, but still above Euler's."""
    edm = ode_errors(EDMSchedule(), "dpmpp_2m")
    assert all(edm[i] / edm[i + 1] > 4 * 0.85 for i in range(2)), edm
    for schedule in (PhiSchedule(), EDMSchedule()):
        ours, euler = ode_errors(schedule, "dpmpp_2m"), ode_errors(schedule, "euler")
        assert all(a < b / 5 for a, b in zip(ours, euler)), (ours, euler)
        assert ours[0] / ours[2] > 8, ours  # better than first order (x4 over two doublings)


@pytest.mark.parametrize("schedule", [PhiSchedule(), EDMSchedule()], ids=repr)
@pytest.mark.parametrize("sampler", ["heun", "dpmpp_2m"])
def test_samples_match_gaussian_mean_and_std(schedule, sampler):
    mu, s = 0.3, 0.5
    out = draw(schedule, 40, sampler, mu, s)
    assert abs(out.mean() / mu - 1) < 0.02 and abs(out.std() / s - 1) < 0.02


def test_ddpm_schedule_keeps_its_finite_horizon_bias():
    """DDPM's linear betas end at sigma_max = 12.2, not pure noise: a sample started from noise keeps a fraction
    s / sqrt(s^2 + sigma_max^2) of the gap to the data mean (exact for the Gaussian ODE)."""
    schedule, mu, s = VPSchedule(), 0.3, 0.5
    out = draw(schedule, 40, "heun", mu, s)
    expected_mean = mu * (1 - s / math.sqrt(s**2 + schedule.sigma_max**2))
    assert abs(out.mean() / expected_mean - 1) < 0.01 and abs(out.std() / s - 1) < 0.02


def test_heun_churn_is_seeded_and_stays_accurate():
    schedule, mu, s = EDMSchedule(), 0.3, 0.5
    sigmas = schedule.grid(60).double()
    den = gaussian_denoiser(mu, s)
    x = torch.randn(100_000, generator=torch.Generator().manual_seed(1), dtype=torch.float64) * sigmas[0]
    kw = dict(s_churn=10.0, s_tmin=0.05, s_tmax=50.0)
    a = sample_heun(den, x, sigmas, None, generator=torch.Generator().manual_seed(3), **kw)
    b = sample_heun(den, x, sigmas, None, generator=torch.Generator().manual_seed(3), **kw)
    c = sample_heun(den, x, sigmas, None)
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert abs(a.mean() / mu - 1) < 0.03 and abs(a.std() / s - 1) < 0.03


@pytest.mark.parametrize("schedule,steps", [(PhiSchedule(), (50, 100, 200)), (EDMSchedule(), (200, 400, 800))],
                         ids=["phi", "edm"])
def test_ancestral_samples_converge_to_gaussian_at_first_order(schedule, steps):
    """Plugging D(x) in for y loses a little variance per step, so the std error halves with each doubling of the
    steps (first order); the mean is right at any step count. The same generator seed gives the same sample."""
    mu, s, errors = 0.3, 0.5, []
    den = gaussian_denoiser(mu, s)
    for n in steps:  # EDM's grid is coarser where this data's variance is decided (sigma ~ 0.5), so it needs more
        sigmas = schedule.grid(n).double()
        x = torch.randn(100_000, generator=torch.Generator().manual_seed(0), dtype=torch.float64) * sigmas[0]
        out = sample_euler_ancestral(den, x, sigmas, None, generator=torch.Generator().manual_seed(5))
        assert abs(out.mean() / mu - 1) < 0.02
        errors.append(abs(float(out.std()) / s - 1))
    assert all(errors[i] / errors[i + 1] > 1.5 for i in range(2)) and errors[-1] < 0.012, errors
    again = sample_euler_ancestral(den, x, sigmas, None, generator=torch.Generator().manual_seed(5))
    other = sample_euler_ancestral(den, x, sigmas, None, generator=torch.Generator().manual_seed(6))
    assert torch.equal(out, again) and not torch.equal(out, other)


def test_ancestral_with_eta_zero_is_euler():
    sigmas = PhiSchedule().grid(8)
    den = gaussian_denoiser(0.2, 0.5)
    x = torch.randn(1000, generator=torch.Generator().manual_seed(2)) * sigmas[0]
    torch.testing.assert_close(sample_euler_ancestral(den, x, sigmas, None, eta=0.0), sample_euler(den, x, sigmas, None))
    with pytest.raises(ValueError, match="eta"):
        sample_euler_ancestral(den, x, sigmas, None, eta=1.5)


def test_ancestral_forgets_an_early_error_faster_than_the_ode():
    """An error delta in x at sigma = 1 (on N(mu, s^2) data): the ODE carries the share s / sqrt(s^2 + 1) of it to
    the sample, the reverse SDE that ancestral sampling discretises only s^2 / (s^2 + 1) (its drift is twice the
    ODE's score term, so the offset decays with the square of the ODE's factor)."""
    mu, s, delta = 0.0, 0.5, 1.0
    sigmas = torch.cat([torch.logspace(0, -3, 400, dtype=torch.float64), torch.zeros(1, dtype=torch.float64)])
    z = torch.randn(200_000, generator=torch.Generator().manual_seed(3), dtype=torch.float64)
    x = mu + delta + (z - z.mean()) / z.std() * math.sqrt(s**2 + 1)
    den = gaussian_denoiser(mu, s)
    ode = sample_euler(den, x, sigmas, None).mean() - mu
    sde = sample_euler_ancestral(den, x, sigmas, None, generator=torch.Generator().manual_seed(4)).mean() - mu
    assert abs(ode / (delta * s / math.sqrt(s**2 + 1)) - 1) < 0.03, float(ode)
    assert abs(sde / (delta * s**2 / (s**2 + 1)) - 1) < 0.05, float(sde)


def test_differentiable_euler_matches_euler_and_carries_gradients():
    schedule = PhiSchedule()
    sigmas = schedule.grid(10)
    scale = torch.tensor(0.5, requires_grad=True)

    def den(x, sigma, cond):
        return scale * x / (1 + torch.as_tensor(sigma) ** 2)

    x = torch.randn(4, 3, 8, 8) * sigmas[0]
    with torch.no_grad():
        ref = sample_euler(den, x, sigmas, None)
    for ckpt in (False, True):
        scale.grad = None
        out = sample_euler_diff(den, x, sigmas, None, checkpointing=ckpt)
        torch.testing.assert_close(out, ref)
        out.sum().backward()
        assert scale.grad is not None and scale.grad.abs() > 0


def test_guide_with_zero_gradient_equals_unguided():
    schedule = PhiSchedule()
    sigmas = schedule.grid(8).double()
    den = gaussian_denoiser(0.2, 0.5)
    x = torch.randn(1000, dtype=torch.float64) * sigmas[0]
    plain = sample_euler(den, x, sigmas, None)
    guided = sample_euler(den, x, sigmas, None, guide=lambda d: 0.0 * d.sum())
    torch.testing.assert_close(plain, guided)
    pulled = sample_euler(den, x, sigmas, None, guide=lambda d: 1e-3 * (d - 1).square().sum())
    assert (pulled.mean() - 1).abs() < (plain.mean() - 1).abs()


def test_unknown_sampler():
    with pytest.raises(ValueError, match="unknown sampler"):
        get_sampler("ddim")


def test_sample_seeds_the_ancestral_noise():
    """models.sampling.sample hands its seeded generator to a stochastic sampler: a seed fixes the whole sample."""
    from models.denoiser import Cond
    from models.sampling import sample

    cond = Cond(torch.zeros(2, 1, 8, 8), torch.zeros(2, 3, 8, 8))
    den = gaussian_denoiser(0.1, 0.5)
    a, b, c = (sample(den, PhiSchedule(), cond, 10, "euler_ancestral", seed=s) for s in (1, 1, 2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    ode = sample(den, PhiSchedule(), cond, 10, "euler", seed=1)
    assert not torch.equal(a, ode)
