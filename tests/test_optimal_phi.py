"""The phi* search (apps/phi_search.py) and its command line (optimal_phi.py)."""
import json
import math
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from scipy import stats
from skimage.metrics import structural_similarity

import optimal_phi
from models.phi import CANDIDATES
from apps.phi_search import (
    SSIMAlongSigmas,
    Score,
    candidate_grids,
    noised_ssim,
    r_squared,
    rank,
    sample_images,
    schedule_grids,
    search,
    score_summary,
)
from utils.errors import UserError

FIGURES = [f"{kind}_{key}.png" for kind in ("ssim_curve", "noisy_image_grid") for key in ("ddpm", "edm", "phi")]
TABLES = ["phi_ranking.csv", "phi_ranking.json", "phi_ranking.md"]


def _write_faces(folder, count, size=20, seed=0):
    """Small synthetic images (smooth colour blobs) written as PNG files."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(count):
        coarse = rng.integers(0, 256, (4, 4, 3), dtype=np.uint8)
        Image.fromarray(coarse).resize((size, size), Image.BICUBIC).save(folder / f"{i:03d}.png")
    return folder


def _tiny_run(images, out, *extra):
    return optimal_phi.main(["--images", str(images), "--out", str(out), "--size", "16", "--steps", "6",
                             "--sweep-c", "0.1", "0.3", "1", "--no-compile", *extra])


# ---- grids and scores -----------------------------------------------------------------------------------------------

def test_every_candidate_grid_is_evenly_spaced_in_its_phi():
    grids, skipped = candidate_grids(CANDIDATES.values(), 50, 0.002, 80.0)
    assert not skipped and list(grids) == list(CANDIDATES)
    for name, grid in grids.items():
        assert grid.dtype == torch.float64 and len(grid) == 50
        assert grid[0] == 80.0 and grid[-1] == 0.002, name
        steps = torch.diff(CANDIDATES[name](grid))
        torch.testing.assert_close(steps, torch.full_like(steps, float(steps.mean())), rtol=1e-6, atol=0,
                                   msg=lambda m, name=name: f"{name}: {m}")


def test_candidates_that_cannot_resolve_the_range_are_skipped_with_a_reason():
    grids, skipped = candidate_grids(CANDIDATES.values(), 10, 40.0, 80.0)
    assert {"tanh(sigma)", "sigmoid(sigma)"} <= set(skipped)
    assert "float64" in skipped["tanh(sigma)"]
    assert "sigma/(sigma+0.3)" in grids


def test_schedule_grids_are_the_schedules_in_forward_order():
    grids = schedule_grids(20, 0.002, 80.0)
    for key, grid in grids.items():
        assert len(grid) == 20 and (torch.diff(grid) > 0).all(), key
    assert grids["edm"][0] == pytest.approx(0.002) and grids["edm"][-1] == pytest.approx(80.0)
    assert grids["ddpm"][-1] == pytest.approx(12.2, rel=0.01)  # sqrt(1 / alpha_bar_T - 1) of the linear betas


def test_r_squared_of_exactly_linear_data_is_one():
    x = torch.linspace(-3, 7, 50, dtype=torch.float64)
    y = torch.stack([2.5 * x + 1, -0.01 * x + 0.3])
    torch.testing.assert_close(r_squared(x, y), torch.ones(2, dtype=torch.float64), rtol=0, atol=1e-12)


def test_r_squared_matches_scipy_and_is_nan_when_undefined():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(4, 30, generator=g, dtype=torch.float64)
    y = x**3 + 0.1 * torch.randn(4, 30, generator=g, dtype=torch.float64)
    expected = [stats.linregress(a, b).rvalue ** 2 for a, b in zip(x.numpy(), y.numpy())]
    np.testing.assert_allclose(r_squared(x, y).numpy(), expected, rtol=1e-10)
    assert math.isnan(r_squared(x[0], torch.full((30,), 0.5, dtype=torch.float64)))
    assert math.isnan(r_squared(torch.ones(30, dtype=torch.float64), y[0]))


def test_ranking_skips_nan_images_and_puts_unscored_candidates_last():
    partly = score_summary("a", torch.tensor([0.5, math.nan, 0.7], dtype=torch.float64))
    assert (partly.mean, partly.n_valid, partly.n_images) == (pytest.approx(0.6), 2, 3)
    assert partly.std == pytest.approx(math.sqrt(0.02))
    unscored = score_summary("b", torch.full((3,), math.nan, dtype=torch.float64), "not scored: x")
    better = Score("c", 0.9, 0.0, 3, 3)
    assert [s.name for s in rank([unscored, partly, better])] == ["c", "a", "b"]


# ---- SSIM along the grids -----------------------------------------------------------------------------------------

def _face_and_noise(size=24, seed=0):
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(1, 3, 4, 4, generator=g)
    x0 = torch.nn.functional.interpolate(coarse, size=(size, size), mode="bilinear").mul(2).sub(1)
    return x0, torch.randn(x0.shape, generator=g)


def test_noised_ssim_is_skimage_ssim_of_the_clipped_noisy_copy():
    x0, noise = _face_and_noise()
    sigmas = torch.tensor([0.002, 0.1, 0.5, 3.0, 80.0])
    ours = noised_ssim(x0, noise, sigmas)
    to01 = lambda t: ((t + 1) / 2).permute(1, 2, 0).double().numpy()  # noqa: E731
    expected = [structural_similarity(to01(x0[0]), to01((x0[0] + float(s) * noise[0]).clamp(-1, 1)),
                                      channel_axis=2, data_range=1.0) for s in sigmas]
    np.testing.assert_allclose(ours.double().numpy(), expected, rtol=0, atol=1e-4)
    assert expected[0] > 0.99 and expected[-1] < 0.1


def test_chunked_and_compiled_evaluation_agree_with_one_batch():
    x0, noise = _face_and_noise(size=16)
    sigmas = torch.logspace(-2.7, 1.9, 11, dtype=torch.float64)
    whole = noised_ssim(x0, noise, sigmas.float()).double()
    chunked = SSIMAlongSigmas(chunk=4, compile=False)(x0, noise, sigmas)
    compiled = SSIMAlongSigmas(chunk=4, compile=True)(x0, noise, sigmas)  # padded to 12, compiled once
    assert chunked.dtype == torch.float64 and chunked.shape == (11,)
    torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-6)
    torch.testing.assert_close(compiled, whole, rtol=0, atol=1e-5)


def test_search_scores_every_candidate_and_reuses_shared_sigmas():
    x0, noise = _face_and_noise(size=16)
    images, noises = torch.cat([x0, -x0]), torch.cat([noise, noise.flip(-1)])
    calls = []

    def evaluate(x, n, sigmas):
        calls.append(len(sigmas))
        return noised_ssim(x, n, sigmas.float()).double()

    result = search(images, noises, list(CANDIDATES.values()), [0.3, 2.0], 8, 0.002, 80.0, evaluate, progress=False)
    assert sorted(s.name for s in result.ranking) == sorted(CANDIDATES)
    assert all(s.n_valid == 2 and 0 <= s.mean <= 1 for s in result.ranking)
    assert [c for c, _ in result.sweep] == [0.3, 2.0]
    assert result.sweep[0][1] == next(s for s in result.ranking if s.name == "sigma/(sigma+0.3)")
    # one call per image; the endpoints every candidate shares are evaluated once
    n_grids = len(CANDIDATES) + 1 + 3
    assert calls[0] == calls[1] < n_grids * 8
    assert set(result.schedule_ssim) == {"ddpm", "edm", "phi"}
    assert result.schedule_ssim["edm"].shape == (2, 8)


# ---- images --------------------------------------------------------------------------------------------------------

def test_sample_images_says_when_the_folder_is_small_and_skips_unreadable(tmp_path):
    folder = _write_faces(tmp_path / "faces", 3)
    (folder / "broken.png").write_bytes(b"not a png")
    paths, images, notes = sample_images(folder, 10, 16, torch.Generator().manual_seed(0))
    assert len(paths) == 3 and images.shape == (3, 3, 16, 16)
    assert paths == sorted(paths) and "broken.png" not in {p.name for p in paths}
    assert any("only 4 images" in note for note in notes)
    assert any("skipped 1 unreadable" in note and "broken.png" in note for note in notes)


def test_sample_images_is_a_seeded_subset(tmp_path):
    folder = _write_faces(tmp_path / "faces", 8)
    pick = lambda seed: sample_images(folder, 3, 16, torch.Generator().manual_seed(seed))[0]  # noqa: E731
    assert pick(0) == pick(0)
    assert any(pick(0) != pick(seed) for seed in (1, 2, 3))


def test_no_readable_image_is_a_user_error(tmp_path):
    (tmp_path / "a.png").write_bytes(b"junk")
    with pytest.raises(UserError, match="could be read"):
        sample_images(tmp_path, 2, 16, torch.Generator())


# ---- command line --------------------------------------------------------------------------------------------------

def test_cli_is_deterministic_for_a_seed_and_writes_every_output(tmp_path, capsys):
    faces = _write_faces(tmp_path / "faces", 4)
    for run in ("a", "b"):
        assert _tiny_run(faces, tmp_path / run, "--num-images", "3", "--seed", "7") == 0
    _tiny_run(faces, tmp_path / "c", "--num-images", "3", "--seed", "8")
    for name in TABLES:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name
    assert (tmp_path / "a" / "phi_ranking.json").read_bytes() != (tmp_path / "c" / "phi_ranking.json").read_bytes()
    for name in FIGURES + ["phi_c_sweep.png"]:
        assert (tmp_path / "a" / name).stat().st_size > 1000, name
    report = json.loads((tmp_path / "a" / "phi_ranking.json").read_text())
    assert len(report["ranking"]) == len(CANDIDATES) and report["settings"]["num_images"] == 3
    printed = capsys.readouterr().out
    assert "| 1 | `" in printed and "sigma/(sigma+0.3) ranks" in printed


@pytest.mark.parametrize(
    "args, message",
    [
        (["--sigma-min", "1", "--sigma-max", "1"], "--sigma-min < --sigma-max"),
        (["--steps", "1"], "--steps must be between 2"),
        (["--num-images", "0"], "--num-images must be at least 1"),
        (["--size", "5"], "SSIM window"),
    ],
)
def test_cli_rejects_invalid_settings_in_one_line(tmp_path, capsys, args, message):
    faces = _write_faces(tmp_path / "faces", 1)
    with pytest.raises(SystemExit) as exit_info:
        optimal_phi.main(["--images", str(faces), "--out", str(tmp_path / "out"), *args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and err.count("\n") == 1
    assert not (tmp_path / "out").exists()


def test_cli_empty_folder_is_one_line_error(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        optimal_phi.main(["--images", str(tmp_path), "--out", str(tmp_path / "out")])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "contains no images" in err and err.count("\n") == 1


def test_real_faces_favour_the_ssimbad_family_over_raw_sigma(shared_faces, tmp_path):
    assert _tiny_run(shared_faces / "test", tmp_path, "--num-images", "2", "--size", "32", "--steps", "12") == 0
    scores = {row["phi"]: row["mean_r2"] for row in json.loads((tmp_path / "phi_ranking.json").read_text())["ranking"]}
    assert scores["sigma/(sigma+0.3)"] > scores["log(sigma)"] > scores["sigma"]


def test_write_config_is_an_overlay_that_pretrain_reads(tmp_path, capsys):
    images = _write_faces(tmp_path / "imgs", 4)
    overlay = tmp_path / "phi.yaml"
    _tiny_run(images, tmp_path / "out", "--write-config", str(overlay))
    best = re.search(r"sigma/\(sigma\+([0-9.]+)\)", overlay.read_text()).group(1)
    assert f"best c of sigma/(sigma+c) over 0.1, 0.3, 1: {best}" in capsys.readouterr().out
    root = Path(optimal_phi.__file__).resolve().parent
    result = subprocess.run([sys.executable, str(root / "pretrain.py"), "fit", "--config", "configs/cpu64.yaml",
                             "--config", str(overlay), "--data.root", "somewhere", "--print_config"],
                            cwd=root, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]
    assert f"phi: sigma/(sigma+{best})" in result.stdout
    with pytest.raises(SystemExit):  # an existing file is never replaced
        _tiny_run(images, tmp_path / "out2", "--write-config", str(overlay))
    assert "exists already" in capsys.readouterr().err


def test_default_out_is_a_new_version_folder_under_runs(tmp_path, monkeypatch, capsys):
    faces = _write_faces(tmp_path / "faces", 2)
    monkeypatch.chdir(tmp_path)
    args = ["--images", str(faces), "--size", "16", "--steps", "6", "--sweep-c", "0.3", "1", "--no-compile"]
    assert optimal_phi.main(args) == 0
    (tmp_path / "runs" / "optimal_phi" / "version_7").mkdir()  # a gap: the next one is above the highest
    assert optimal_phi.main(args) == 0
    runs = tmp_path / "runs" / "optimal_phi"
    assert sorted(p.name for p in runs.iterdir()) == ["version_0", "version_7", "version_8"]
    for version in ("version_0", "version_8"):
        assert sorted(p.name for p in (runs / version).iterdir()) == sorted(TABLES + FIGURES + ["phi_c_sweep.png"])
    assert f"files to {Path('runs/optimal_phi/version_8')}" in capsys.readouterr().out


def test_an_out_folder_with_files_needs_overwrite(tmp_path, capsys):
    faces = _write_faces(tmp_path / "faces", 2)
    out = tmp_path / "out"
    out.mkdir()
    (out / "phi_ranking.md").write_text("mine")
    with pytest.raises(SystemExit) as exit_info:
        _tiny_run(faces, out)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and err.count("\n") == 1 and "holds files already; pass --overwrite" in err
    assert sorted(p.name for p in out.iterdir()) == ["phi_ranking.md"]
    (tmp_path / "empty").mkdir()
    assert _tiny_run(faces, tmp_path / "empty") == 0  # an empty folder is fine
    assert _tiny_run(faces, out, "--overwrite") == 0
    assert (out / "phi_ranking.md").read_text() != "mine" and (out / "phi_c_sweep.png").is_file()
