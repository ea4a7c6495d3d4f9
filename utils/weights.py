"""Pretrained networks for metrics and perceptual losses, read from local files only: nothing is ever downloaded.

Each network is looked up as an explicit path first, then in the cache its own library downloads to:
- LPIPS: the linear layers ship inside the ``lpips`` package; the VGG16/AlexNet/SqueezeNet trunk is torchvision's
  ImageNet checkpoint in ``$TORCH_HOME/hub/checkpoints`` (``torch.hub.get_dir()``).
- Inception-v3 for FID/KID: torch-fidelity's converted TF weights in the same folder (pytorch-fid's file of the same
  name tag is tried next; a file whose layers do not fit torch-fidelity's network is a one-line error).
- CLIP: an open_clip checkpoint file, or the Hugging Face hub cache entry open_clip would download (read with
  ``huggingface_hub.try_to_load_from_cache``, which never touches the network).
A missing file is a :class:`MissingWeightsError`: one line naming the file and where to put it.
``random_init_for_tests`` builds the same modules with seeded random weights; only tests may use it.
"""
from __future__ import annotations

import io
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .errors import UserError

TORCHVISION_URL = "https://download.pytorch.org/models/"
LPIPS_TRUNKS = {  # lpips net name -> torchvision checkpoint its trunk comes from
    "vgg": "vgg16-397923af.pth",
    "alex": "alexnet-owt-7be5be79.pth",
    "squeeze": "squeezenet1_1-b8a52dc0.pth",
}
INCEPTION_FILES = (  # torch-fidelity's file first, then pytorch-fid's conversion of the same TF graph (same hash tag)
    "weights-inception-2015-12-05-6726825d.pth",
    "pt_inception-2015-12-05-6726825d.pth",
)
INCEPTION_URL = "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/" + INCEPTION_FILES[0]
INCEPTION_FEATURE_DIMS = (64, 192, 768, 2048)
RANDOM_INIT_SEED = 0


class MissingWeightsError(UserError):
    """Pretrained weights are not on this machine (and will not be downloaded)."""


def torch_checkpoints_dir() -> Path:
    """The folder torch.hub downloads checkpoints to: ``$TORCH_HOME/hub/checkpoints`` (default ~/.cache/torch)."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def _explicit_file(path: str | Path, what: str) -> Path:
    path = Path(path).expanduser()
    if not path.is_file():
        raise MissingWeightsError(f"{what} weights file {path} does not exist; pass the path of the downloaded file")
    return path


def _brief(err: Exception, limit: int = 300) -> str:
    """An exception as one line of at most ``limit`` characters (state-dict errors list every key, over many lines)."""
    text = f"{type(err).__name__}: " + " ".join(str(err).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _load_state_dict(path: Path, what: str) -> dict:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # a corrupt or foreign file: torch raises many exception types
        raise UserError(f"{path} is not a readable {what} checkpoint ({_brief(err)})") from None


def _seeded(build):
    """Run ``build()`` with the CPU generator seeded, restoring the caller's random state afterwards."""
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(RANDOM_INIT_SEED)
        return build()


# ---------------------------------------------------------------------------------------------------- LPIPS


def find_lpips_trunk(net: str = "vgg", weights: str | Path | None = None) -> Path:
    """The torchvision ImageNet checkpoint of the LPIPS trunk ``net`` ('vgg', 'alex' or 'squeeze')."""
    if net not in LPIPS_TRUNKS:
        raise UserError(f"unknown LPIPS network {net!r}; choose one of {', '.join(LPIPS_TRUNKS)}")
    if weights is not None:
        return _explicit_file(weights, f"LPIPS {net}")
    path = torch_checkpoints_dir() / LPIPS_TRUNKS[net]
    if not path.is_file():
        raise MissingWeightsError(
            f"LPIPS-{net} needs torchvision's {LPIPS_TRUNKS[net]}, not found in {path.parent}; download "
            f"{TORCHVISION_URL}{LPIPS_TRUNKS[net]} into that folder (or set TORCH_HOME), or pass the file's path "
            "(evaluate_SSIM_PSNR.py --lpips-weights)"
        )
    return path


class LPIPSDistance(nn.Module):
    """LPIPS distance between two image batches in [-1, 1], shape (B,). Frozen and always in eval mode (no dropout),
    so it can serve as a loss inside a training module; gradients flow to the inputs."""

    def __init__(self, lpips_model: nn.Module) -> None:
        super().__init__()
        self.lpips = lpips_model.requires_grad_(False).eval()

    def train(self, mode: bool = True) -> "LPIPSDistance":
        return super().train(False)

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        return self.lpips(x, y).flatten()


def build_lpips(
    net: str = "vgg", weights: str | Path | None = None, random_init_for_tests: bool = False
) -> LPIPSDistance:
    """LPIPS v0.1 (Zhang et al. 2018) with the ``lpips`` package's linear layers and torchvision's ImageNet trunk.

    ``weights`` is the trunk checkpoint (torchvision format, e.g. vgg16-397923af.pth); by default it is looked up
    in ``$TORCH_HOME/hub/checkpoints``. ``random_init_for_tests`` keeps a seeded random trunk (tests only).
    """
    import lpips

    path = None if random_init_for_tests else find_lpips_trunk(net, weights)
    with warnings.catch_warnings():  # lpips builds torchvision nets with the deprecated `pretrained=` argument
        warnings.filterwarnings("ignore", category=UserWarning, module="torchvision")
        model = _seeded(lambda: lpips.LPIPS(net=net, pnet_rand=True, verbose=False))
    if path is not None:
        state = _load_state_dict(path, f"torchvision {net}")
        # lpips splits torchvision's `features` into slices that keep the layer indices: net.sliceK.<i>.<param>
        try:
            trunk = {key: state["features." + key.split(".", 1)[1]] for key in model.net.state_dict()}
            model.net.load_state_dict(trunk)
        except (KeyError, RuntimeError) as err:
            raise UserError(f"{path} is not torchvision's {LPIPS_TRUNKS[net]} ({_brief(err)})") from None
    return LPIPSDistance(model)


# ---------------------------------------------------------------------------------------------------- Inception


def find_inception_weights(weights: str | Path | None = None) -> Path:
    """The FID Inception-v3 weights: ``weights`` or torch-fidelity's file in ``$TORCH_HOME/hub/checkpoints``."""
    if weights is not None:
        return _explicit_file(weights, "Inception-v3 (FID)")
    folder = torch_checkpoints_dir()
    for name in INCEPTION_FILES:
        if (folder / name).is_file():
            return folder / name
    raise MissingWeightsError(
        f"FID/KID need the Inception-v3 weights {INCEPTION_FILES[0]}, not found in {folder}; download {INCEPTION_URL} "
        "into that folder (or set TORCH_HOME), or pass --inception-weights PATH"
    )


def _random_inception_state() -> dict[str, torch.Tensor]:
    """Seeded random weights in torch-fidelity's layout (torchvision's Inception-v3 with 1008 classes has the same
    keys). He-normal convolutions keep the features of order one, as in a trained network."""
    import torchvision

    def build():
        net = torchvision.models.inception_v3(weights=None, aux_logits=False, init_weights=False, num_classes=1008)
        for module in net.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, nonlinearity="relu")
        return net.state_dict()

    return _seeded(build)


def build_inception(
    weights: str | Path | None = None, dims: int = 2048, random_init_for_tests: bool = False
) -> nn.Module:
    """torchmetrics' Inception-v3 feature extractor (the one FrechetInceptionDistance builds from torch-fidelity):
    uint8 images (B, 3, H, W) -> float features (B, dims), resized to 299 px like TF1 (as torch-fidelity/TF FID)."""
    from torchmetrics.image.fid import NoTrainInceptionV3

    if dims not in INCEPTION_FEATURE_DIMS:
        raise UserError(f"Inception feature size must be one of {INCEPTION_FEATURE_DIMS}, got {dims}")
    if random_init_for_tests:
        source: Path | io.BytesIO = io.BytesIO()
        torch.save(_random_inception_state(), source)
        source.seek(0)
    else:
        source = find_inception_weights(weights)
    try:
        return NoTrainInceptionV3(
            "inception-v3-compat", [str(dims)], feature_extractor_weights_path=source, antialias=False
        )
    except Exception as err:  # unpickling or state-dict mismatch of a foreign file
        raise UserError(f"{source} is not torch-fidelity's Inception-v3 FID weights ({_brief(err)})") from None


# ---------------------------------------------------------------------------------------------------- CLIP


def _hf_cached_file(repo_id: str, filenames: tuple[str, ...]) -> Path | None:
    from huggingface_hub import try_to_load_from_cache

    for filename in filenames:
        found = try_to_load_from_cache(repo_id, filename)
        if isinstance(found, str):
            return Path(found)
    return None


def find_clip_checkpoint(
    model: str = "ViT-B-32", pretrained: str = "openai", checkpoint: str | Path | None = None
) -> Path:
    """An open_clip checkpoint: ``checkpoint`` or the file open_clip downloads for (model, pretrained) from the HF hub,
    found in the local hub cache ($HF_HOME/hub)."""
    import open_clip
    from open_clip.constants import HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME

    if checkpoint is not None:
        return _explicit_file(checkpoint, f"CLIP {model}")
    hub = open_clip.get_pretrained_cfg(model, pretrained).get("hf_hub", "")
    if not hub:
        raise UserError(
            f"open_clip has no Hugging Face hub entry for {model} / {pretrained!r} "
            f"(known tags: {', '.join(open_clip.list_pretrained_tags_by_model(model))}); pass a checkpoint path"
        )
    repo_id, filename = hub.rstrip("/"), None
    if not hub.endswith("/"):
        repo_id, filename = hub.rsplit("/", 1)
    filenames = (filename,) if filename else (HF_SAFE_WEIGHTS_NAME, HF_WEIGHTS_NAME)
    found = _hf_cached_file(repo_id, filenames)
    if found is None:
        raise MissingWeightsError(
            f"CLIP {model}/{pretrained} needs {filenames[0]} of the Hugging Face repo {repo_id}, not in the local hub "
            f"cache; on a machine with internet run `huggingface-cli download {repo_id} {filenames[0]}` and copy the "
            "cache ($HF_HOME/hub) here, or pass the checkpoint path"
        )
    return found


class ClipImageEncoder(nn.Module):
    """Images in [-1, 1] (B, 3, H, W) -> unit-norm CLIP image features (B, D). Frozen, always in eval mode,
    differentiable with respect to the images (for a CLIP loss: 1 - cosine similarity of the features).

    Preprocessing follows open_clip's: resize the short side to the model's input size (bicubic, antialiased), crop
    the centre, normalise with the checkpoint's mean/std."""

    def __init__(self, clip_model: nn.Module, mean: tuple[float, ...], std: tuple[float, ...]) -> None:
        super().__init__()
        self.clip = clip_model.requires_grad_(False).eval()
        size = clip_model.visual.image_size
        self.size = tuple(size) if isinstance(size, (tuple, list)) else (size, size)
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)

    def train(self, mode: bool = True) -> "ClipImageEncoder":
        return super().train(False)

    def _resize_crop(self, x: torch.Tensor) -> torch.Tensor:
        height, width = x.shape[-2:]
        scale = max(self.size[0] / height, self.size[1] / width)
        new_h, new_w = max(self.size[0], round(height * scale)), max(self.size[1], round(width * scale))
        x = F.interpolate(x, size=(new_h, new_w), mode="bicubic", align_corners=False, antialias=True)
        top, left = (new_h - self.size[0]) // 2, (new_w - self.size[1]) // 2
        return x[..., top : top + self.size[0], left : left + self.size[1]]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        x = self._resize_crop((images + 1) / 2)
        x = (x - self.mean) / self.std
        return self.clip.encode_image(x, normalize=True)


def build_clip_image_encoder(
    model: str = "ViT-B-32",
    pretrained: str = "openai",
    checkpoint: str | Path | None = None,
    random_init_for_tests: bool = False,
) -> ClipImageEncoder:
    """open_clip ``model`` with the weights of tag ``pretrained`` (from ``checkpoint`` or the HF hub cache).

    The tag also sets QuickGELU and the normalisation constants, also when the weights come from ``checkpoint``.
    ``random_init_for_tests`` builds the architecture with seeded random weights (tests only)."""
    import open_clip

    tag = open_clip.get_pretrained_cfg(model, pretrained)
    path = None if random_init_for_tests else find_clip_checkpoint(model, pretrained, checkpoint)
    try:
        clip_model = _seeded(
            lambda: open_clip.create_model(
                model, pretrained=str(path) if path else None, force_quick_gelu=tag.get("quick_gelu", False)
            )
        )
    except Exception as err:  # unknown model name, or a checkpoint that does not fit the architecture
        raise UserError(f"cannot build CLIP {model} from {path or 'random weights'} ({_brief(err)})") from None
    preprocess = open_clip.get_model_preprocess_cfg(clip_model)
    return ClipImageEncoder(clip_model, tag.get("mean", preprocess["mean"]), tag.get("std", preprocess["std"]))
