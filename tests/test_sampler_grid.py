"""The sampler grid as a model option (``grid`` "phi" | "edm", ``rho``): today's samples on "phi", EDM's eq. 5 grid on
"edm" (with a noise start too), saved in and read from checkpoints, refused where it means nothing (cold), and what
every shipped config samples with."""
from pathlib import Path

import pytest
import torch

from conftest import acting_model_and_cond, tiny_colorizer
from models.checkpoint import load_colorizer
from models.cold import ColdSchedule
from models.denoiser import Cond
from models.solvers import get_sampler
from models.sampling import check_pairing, sample
from models.schedules import PhiSchedule, sampler_grid
from test_samplers import gaussian_denoiser


@pytest.fixture(scope="module")
def model_and_cond():
    return acting_model_and_cond(steps=5, sampler="euler_ancestral")


def seen_sigmas(model, **options) -> list[float]:
    """The noise levels the EMA denoiser is called at while sampling."""
    calls = []
    hook = model.ema.register_forward_pre_hook(lambda m, args: calls.append(float(args[1].reshape(-1)[0])))
    try:
        with torch.no_grad():
            model.sample(options.pop("cond"), seed=0, **options)
    finally:
        hook.remove()
    return calls


def test_phi_grid_samples_as_before_bit_for_bit(model_and_cond):
    """The code path before the option: seeded noise times the schedule's grid[0], the sampler on schedule.grid, the
    same generator for the ancestral noise."""
    model, cond = model_and_cond
    gen = torch.Generator().manual_seed(3)
    sigmas = model.schedule.grid(5)
    noise = torch.randn((2, 3, 16, 16), generator=gen)
    with torch.no_grad():
        before = get_sampler("euler_ancestral")(model.ema, noise * sigmas[0], sigmas, cond, generator=gen)
        assert torch.equal(model.sample(cond, seed=3), before)
        assert torch.equal(model.sample(cond, seed=3, grid="phi"), before)
        assert not torch.equal(model.sample(cond, seed=3, grid="edm"), before)


def test_edm_grid_is_what_the_denoiser_sees_with_and_without_a_noise_start(model_and_cond):
    model, cond = model_and_cond
    edm = sampler_grid(model.schedule, 5, "edm", 7.0)
    assert seen_sigmas(model, cond=cond, grid="edm") == pytest.approx(edm[:-1].tolist())
    assert seen_sigmas(model, cond=cond, grid="edm", rho=3.0) == pytest.approx(
        sampler_grid(model.schedule, 5, "edm", 3.0)[:-1].tolist())
    # a noise start at sigma 2: sigma_start, then the edm grid's points below it
    started = seen_sigmas(model, cond=cond, grid="edm", sigma_start=2.0, init=cond.reference)
    assert started == pytest.approx([2.0] + [s for s in edm[:-1].tolist() if s < 2.0])
    assert len(started) < 5


def test_a_checkpoint_saved_with_the_edm_grid_samples_on_it(model_and_cond, tmp_path):
    model, cond = model_and_cond
    saved = tiny_colorizer(steps=5, sampler="euler_ancestral", grid="edm", rho=5.0)
    saved.load_state_dict(model.state_dict())
    path = tmp_path / "edm_grid.ckpt"
    torch.save({"state_dict": saved.state_dict(), "hyper_parameters": dict(saved.hparams)}, path)
    loaded = load_colorizer(path)
    assert (loaded.hparams.grid, loaded.hparams.rho) == ("edm", 5.0)
    assert seen_sigmas(loaded, cond=cond) == pytest.approx(sampler_grid(loaded.schedule, 5, "edm", 5.0)[:-1].tolist())
    with torch.no_grad():
        assert torch.equal(loaded.sample(cond, seed=1), model.sample(cond, seed=1, grid="edm", rho=5.0))


def test_bad_grids_are_refused_at_construction_and_for_the_cold_schedule():
    with pytest.raises(ValueError, match="grid must be one of phi, edm"):
        tiny_colorizer(grid="karras")
    with pytest.raises(ValueError, match="rho must be positive"):
        tiny_colorizer(grid="edm", rho=-1.0)
    with pytest.raises(ValueError, match="has no noise"):
        tiny_colorizer(schedule=ColdSchedule(), sampler="cold", prediction="x0", grid="edm")
    check_pairing(ColdSchedule(), "cold", "phi")
    cond = Cond(torch.zeros(1, 1, 8, 8), torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="has no noise"):
        sample(gaussian_denoiser(0.0, 0.5), ColdSchedule(), cond, 4, "cold", grid="edm")
    sample(gaussian_denoiser(0.0, 0.5), PhiSchedule(), cond, 4, "euler", grid="edm")  # a noise schedule takes it


def test_trajectory_refinement_trains_on_the_grid_it_validates_on(model_and_cond):
    from models.refiner import TrajectoryRefiner

    _, cond = model_and_cond
    refiner = TrajectoryRefiner(net=tiny_colorizer().denoiser.net, refine_steps=4, steps=4, grid="edm", rho=5.0)
    calls = []
    hook = refiner.denoiser.register_forward_pre_hook(lambda m, args: calls.append(float(args[1].reshape(-1)[0])))
    batch = {"target": cond.reference, "sketch": cond.sketch, "reference": cond.reference}
    try:
        with torch.no_grad():
            refiner.refine(batch, generator=torch.Generator().manual_seed(0))
    finally:
        hook.remove()
    assert calls == pytest.approx(sampler_grid(refiner.schedule, 4, "edm", 5.0)[:-1].tolist())


def test_the_command_lines_grid_list_is_the_models():
    from apps.colorizer import GRIDS  # kept without importing models (colorize.py answers --help fast)
    from models.schedules import GRIDS as MODEL_GRIDS

    assert GRIDS == MODEL_GRIDS


CONFIGS = Path(__file__).resolve().parents[1] / "configs"
#: What the shipped configs sample with (sampler, grid, steps), as docs/experiments/speckle-and-samplers.md measured
#: (the config files' comments say why where a config does not take the tables' pick).
MEASURED = {
    ("pretrain.yaml",): ("euler_ancestral", "edm", 10), ("cpu64.yaml",): ("euler_ancestral", "edm", 10),
    ("cpu64.yaml", "demo.yaml"): ("euler_ancestral", "phi", 10),
    ("cpu64.yaml", "baselines/edm.yaml"): ("euler_ancestral", "phi", 10),
    ("cpu64.yaml", "baselines/ddpm.yaml"): ("euler_ancestral", "phi", 50),
    ("pretrain.yaml", "baselines/cold.yaml"): ("cold", "phi", 6),
    ("cpu64.yaml", "variants/refattn.yaml"): ("euler_ancestral", "edm", 10),
    ("cpu64.yaml", "variants/multiref.yaml"): ("euler_ancestral", "edm", 10),
    ("finetune.yaml",): ("euler", "phi", 50), ("finetune_demo.yaml",): ("euler", "phi", 10),
}


def merged_model(*names: str) -> dict:
    """The ``model`` section of configs given in this order, as LightningCLI merges them: later ones override,
    mappings merge, and a new class_path starts from its own init_args."""
    import yaml

    def merge(base: dict, over: dict) -> dict:
        if over.get("class_path", base.get("class_path")) != base.get("class_path"):
            return over
        return {**base, **{k: merge(base[k], v) if isinstance(v, dict) and isinstance(base.get(k), dict) else v
                           for k, v in over.items()}}

    model: dict = {}
    for name in names:
        model = merge(model, (yaml.safe_load((CONFIGS / name).read_text()) or {}).get("model") or {})
    return model


def config_combinations() -> list[tuple[str, ...]]:
    overlays = sorted(str(p.relative_to(CONFIGS)) for p in CONFIGS.glob("*/*.yaml"))
    return ([(base,) for base in ("pretrain.yaml", "cpu64.yaml", "finetune.yaml", "finetune_demo.yaml")]
            + [("cpu64.yaml", "demo.yaml")] + [(base, o) for base in ("pretrain.yaml", "cpu64.yaml") for o in overlays])


@pytest.mark.parametrize("names", config_combinations(), ids="+".join)
def test_every_shipped_config_samples_on_a_grid_its_schedule_takes(names):
    from models.checkpoint import _import

    model = merged_model(*names)
    sampler, grid, steps = model.get("sampler", "heun"), model.get("grid", "phi"), model.get("steps", 18)
    if names in MEASURED:
        assert (sampler, grid, steps) == MEASURED[names]
    spec = model.get("schedule") or {"class_path": "models.schedules.PhiSchedule"}
    schedule = _import(spec["class_path"])(**spec.get("init_args", {}))  # the finetune configs: the checkpoint's
    check_pairing(schedule, sampler, grid)
    assert len(sampler_grid(schedule, steps, grid, model.get("rho", 7.0))) == steps + 1
