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
