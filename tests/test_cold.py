"""The cold-diffusion baseline: its blend, its grid, Algorithm 2 on an exact restorer, training, the config."""
import pytest
import torch

from conftest import tiny_colorizer
from models.cold import ColdSchedule, cold_endpoint
from models.denoiser import Cond
from models.solvers import sample_cold
from models.sampling import sample
from models.schedules import PhiSchedule
from test_pretrain import fixed_batch, run_cli, train_briefly


def test_endpoint_is_the_sketch_tinted_with_the_reference_mean():
    ref = torch.rand(2, 3, 8, 8) * 2 - 1
    white, black = torch.ones(2, 1, 8, 8), -torch.ones(2, 1, 8, 8)
    torch.testing.assert_close(cold_endpoint(white, ref), ref.mean(dim=(2, 3), keepdim=True).expand(2, 3, 8, 8))
    torch.testing.assert_close(cold_endpoint(black, ref), -torch.ones(2, 3, 8, 8))


def test_blend_endpoints_and_grid():
    sched, y = ColdSchedule(), torch.rand(2, 3, 8, 8) * 2 - 1
    cond = Cond(torch.rand(2, 1, 8, 8) * 2 - 1, torch.rand(2, 3, 8, 8) * 2 - 1)
    g = cold_endpoint(cond.sketch, cond.reference)
    torch.testing.assert_close(sched.corrupt(y, torch.zeros(2), None, cond), y)
    torch.testing.assert_close(sched.corrupt(y, torch.ones(2), None, cond), g)
    torch.testing.assert_close(sched.prior(torch.randn(2, 3, 8, 8), 1.0, cond), g)
    grid = sched.grid(5)
    assert len(grid) == 6 and grid[0] == 1 and grid[-1] == 0 and bool((grid.diff() < 0).all())
    t = sched.sample_sigma(1000, generator=torch.Generator().manual_seed(0))
    assert 0 <= float(t.min()) and float(t.max()) <= 1 and abs(float(t.mean()) - 0.5) < 0.05


@pytest.mark.parametrize("steps", [1, 3, 10])
def test_algorithm_2_inverts_the_blend_with_an_exact_restorer(steps):
    """With R(x_t, t) = y every state is the blend itself, D(y, t_i), and x_0 = y whatever the step count."""
    sched, y = ColdSchedule(), torch.rand(1, 3, 8, 8) * 2 - 1
    cond = Cond(torch.rand(1, 1, 8, 8) * 2 - 1, torch.rand(1, 3, 8, 8) * 2 - 1)
    states = []
    out = sample(lambda x, t, c: y, sched, cond, steps, "cold", callback=lambda i, x, d, t: states.append((x, t)))
    torch.testing.assert_close(out, y)
    for x, t in states:
        torch.testing.assert_close(x, sched.corrupt(y, t.reshape(1), None, cond))


def test_cold_sampler_and_schedule_go_together():
    cond = Cond(torch.zeros(1, 1, 8, 8), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="go together"):
        sample(lambda x, t, c: x, PhiSchedule(), cond, 3, "cold")
    with pytest.raises(ValueError, match="go together"):
        sample(lambda x, t, c: x, ColdSchedule(), cond, 3, "euler")
    with pytest.raises(ValueError, match="noise start"):
        sample(lambda x, t, c: x, ColdSchedule(), cond, 3, "cold", init=cond.reference, sigma_start=0.5)
    with pytest.raises(ValueError, match="starts at t = 1"):
        sample_cold(lambda x, t, c: x, torch.zeros(1, 3, 8, 8), torch.tensor([0.5, 0.0]), cond)
    with pytest.raises(ValueError, match="go together"):
        tiny_colorizer(schedule=ColdSchedule(), sampler="euler")


def test_cold_training_steps_lower_the_loss():
    torch.manual_seed(0)
    model = tiny_colorizer(schedule=ColdSchedule(), prediction="x0", sampler="cold", p_drop_sketch=0.0,
                           p_drop_reference=0.0)
    batch = fixed_batch()
    before, after = train_briefly(model, batch)
    assert after < 0.7 * before
    out = model.sample(Cond(batch["sketch"][:2], batch["reference"][:2]), steps=4, use_ema=False)
    assert out.shape == (2, 3, 16, 16) and bool(torch.isfinite(out).all())


def test_cold_config_parses():
    result = run_cli("fit", "--config", "configs/cpu64.yaml", "--config", "configs/baselines/cold.yaml",
                     "--data.root", "somewhere", "--print_config", timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert "models.cold.ColdSchedule" in result.stdout and "sampler: cold" in result.stdout


def test_cold_fit_then_test_on_the_cli(faces, tmp_path):
    from test_pretrain import TINY

    common = ["--config", str(TINY), "--config", "configs/baselines/cold.yaml", "--trainer.logger", "false",
              "--data.root", str(faces), "--data.test_root", str(faces), "--model.steps", "2",
              "--model.test_output_dir", str(tmp_path / "out")]
    fit = run_cli("fit", *common, "--trainer.default_root_dir", str(tmp_path / "fit"), "--trainer.max_steps", "2")
    assert fit.returncode == 0, fit.stderr[-2000:]
    ckpt = next((tmp_path / "fit").rglob("*.ckpt"))
    test = run_cli("test", *common, "--trainer.default_root_dir", str(tmp_path / "test"), "--ckpt_path", str(ckpt))
    assert test.returncode == 0, test.stderr[-2000:]
    assert len(list((tmp_path / "out" / "same").glob("*.png"))) == 16
    edm = run_cli("test", "--config", str(TINY), "--data.root", str(faces), "--ckpt_path", str(ckpt),
                  "--trainer.default_root_dir", str(tmp_path / "edm"))
    assert edm.returncode == 2 and "differs from the checkpoint" in edm.stderr.strip().splitlines()[-1]
