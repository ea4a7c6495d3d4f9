import os
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data" / "anime_faces_128"
sys.path.insert(0, str(ROOT))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))


@pytest.fixture
def shared_faces() -> Path:
    """The shared real anime faces (train/ and test/); tests using them skip when the folder is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"shared anime faces not found at {SHARED_DATA} (see ../shared/data/README.md)")
    return SHARED_DATA


@pytest.fixture
def one_thread():
    """Many tiny kernels: one thread avoids stalls waiting for a second, busy core (the suite shares the machine)."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def tiny_colorizer(**kw):
    """A DiffusionColorizer with a ~0.2M-parameter U-Net (16 px images)."""
    from models.diffusion import DiffusionColorizer
    from models.unet import UNet

    return DiffusionColorizer(net=UNet(base_channels=16, channel_mult=(1, 2), num_blocks=1, attn_heads=2), **kw)


def acting_model_and_cond(**kw):
    """A tiny DiffusionColorizer whose output layer acts (a fresh one is zero) and a 2-image 16 px Cond: a sparse
    line sketch and a random reference."""
    from models.denoiser import Cond

    torch.manual_seed(0)
    model = tiny_colorizer(**kw).eval()
    torch.nn.init.normal_(model.ema.net.out[-1].weight, std=0.5)
    g = torch.Generator().manual_seed(1)
    sketch = torch.where(torch.rand(2, 1, 16, 16, generator=g) < 0.2, -1.0, 1.0)
    return model, Cond(sketch, torch.rand(2, 3, 16, 16, generator=g) * 2 - 1)


@pytest.fixture(scope="module")
def faces(tmp_path_factory) -> Path:
    """16 procedural colour faces of 16 px (12 for training and 4 for validation with ``val_count=4``)."""
    from PIL import Image

    from data.synthetic import render_face

    root = tmp_path_factory.mktemp("faces")
    for i in range(16):
        Image.fromarray(render_face(i, 16)).save(root / f"face_{i:02d}.png")
    return root
