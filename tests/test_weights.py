"""utils.weights: local lookup of pretrained weights, one-line errors when absent, and the modules it builds."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torchvision

from utils.errors import UserError
from utils.weights import (
    INCEPTION_FILES,
    _random_inception_state,
    LPIPS_TRUNKS,
    MissingWeightsError,
    build_clip_image_encoder,
    build_inception,
    build_lpips,
    find_clip_checkpoint,
    find_inception_weights,
    find_lpips_trunk,
)


@pytest.fixture(autouse=True)
def empty_caches(tmp_path, monkeypatch) -> Path:
    """Point torch.hub and the Hugging Face hub at empty folders, so only files a test puts there exist."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr("huggingface_hub.constants.HF_HUB_CACHE", str(tmp_path / "hf" / "hub"))
    return tmp_path


def _one_line(err: pytest.ExceptionInfo) -> str:
    message = str(err.value)
    assert "\n" not in message
    return message


def test_missing_lpips_trunk_names_file_and_folder(empty_caches):
    with pytest.raises(MissingWeightsError) as err:
        find_lpips_trunk("vgg")
    message = _one_line(err)
    assert LPIPS_TRUNKS["vgg"] in message and str(empty_caches / "torch" / "hub" / "checkpoints") in message
    with pytest.raises(MissingWeightsError, match="does not exist"):
        build_lpips("alex", weights=empty_caches / "nowhere.pth")


def test_missing_inception_names_file_and_option(empty_caches):
    with pytest.raises(MissingWeightsError) as err:
        find_inception_weights()
    message = _one_line(err)
    assert INCEPTION_FILES[0] in message and "--inception-weights" in message
    found = empty_caches / "torch" / "hub" / "checkpoints" / INCEPTION_FILES[1]
    found.parent.mkdir(parents=True)
    found.write_bytes(b"x")
    assert find_inception_weights() == found


def test_foreign_inception_file_is_a_one_line_error(empty_caches):
    foreign = empty_caches / "foreign.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, foreign)
    with pytest.raises(UserError) as err:
        build_inception(foreign)
    assert "is not torch-fidelity's Inception-v3" in _one_line(err)


def test_missing_clip_checkpoint_names_repository(empty_caches):
    with pytest.raises(MissingWeightsError) as err:
        find_clip_checkpoint("ViT-B-32", "openai")
    message = _one_line(err)
    assert "timm/vit_base_patch32_clip_224.openai" in message and "open_clip_model.safetensors" in message


def test_clip_checkpoint_found_in_hub_cache(empty_caches):
    repo = empty_caches / "hf" / "hub" / "models--timm--vit_base_patch32_clip_224.openai"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0" * 40)
    snapshot = repo / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "open_clip_pytorch_model.bin").write_bytes(b"x")
    assert find_clip_checkpoint("ViT-B-32", "openai") == snapshot / "open_clip_pytorch_model.bin"


def test_lpips_loads_trunk_from_torchvision_checkpoint(empty_caches):
    features = torchvision.models.alexnet(weights=None).features.state_dict()
    checkpoint = empty_caches / "torch" / "hub" / "checkpoints" / LPIPS_TRUNKS["alex"]
    checkpoint.parent.mkdir(parents=True)
    torch.save({f"features.{key}": value for key, value in features.items()}, checkpoint)
    lpips = build_lpips("alex")
    trunk = lpips.lpips.net.state_dict()
    torch.testing.assert_close(trunk["slice1.0.weight"], features["0.weight"])
    torch.testing.assert_close(trunk["slice5.10.bias"], features["10.bias"])


def test_lpips_is_a_frozen_distance_with_gradients_to_the_input():
    lpips = build_lpips("alex", random_init_for_tests=True)
    x = torch.rand(2, 3, 64, 64) * 2 - 1
    y = (x + 0.3 * torch.randn_like(x)).clamp(-1, 1).requires_grad_(True)
    distance = lpips(x, y)
    assert distance.shape == (2,) and (distance > 0).all()
    assert lpips(x, x).abs().max() < 1e-6
    distance.sum().backward()
    assert y.grad is not None and y.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in lpips.parameters())
    assert not lpips.train().training and not lpips.lpips.training


def test_random_inception_is_seeded_and_well_scaled():
    first, second = _random_inception_state(), _random_inception_state()
    for key in ("Conv2d_1a_3x3.conv.weight", "Mixed_7c.branch_pool.conv.weight"):
        assert torch.equal(first[key], second[key])
    images = torch.randint(0, 256, (2, 3, 64, 64), dtype=torch.uint8)
    features = build_inception(dims=64, random_init_for_tests=True)(images)
    assert features.shape == (2, 64) and 1e-3 < features.abs().mean() < 1e3


def test_clip_encoder_gives_unit_features_and_gradients():
    encoder = build_clip_image_encoder("ViT-B-32", "openai", random_init_for_tests=True)
    images = (torch.rand(1, 3, 96, 80) * 2 - 1).requires_grad_(True)
    features = encoder(images)
    assert features.shape == (1, 512)
    torch.testing.assert_close(features.norm(dim=-1), torch.ones(1))
    (1 - features @ torch.nn.functional.normalize(torch.randn(512), dim=0)).sum().backward()
    assert images.grad.abs().sum() > 0
    assert not encoder.train().training and encoder.size == (224, 224)
