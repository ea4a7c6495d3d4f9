"""SSIM-guided sampling: s = 0 is unguided sampling, the step is per image, the sketch target pulls the XDoG of the
prediction towards the sketch, and the ground-truth target is an oracle that needs the ground truth and says so."""
import pytorch_lightning as pl
import pytest
import torch

from utils.xdog import xdog_torch
from models.diffusion import DiffusionColorizer
from models.denoiser import Cond
from models.ssim_guidance import is_oracle, ssim_guide
from models.unet import UNet
from utils.errors import UserError
from utils.ssim import ssim_box


pytestmark = pytest.mark.usefixtures("one_thread")


def tiny_model(**kw) -> DiffusionColorizer:
    torch.manual_seed(0)
    model = DiffusionColorizer(net=UNet(base_channels=16, channel_mult=(1, 2), num_blocks=1, attn_heads=2),
                               sampler="euler", steps=3, **kw)
    with torch.no_grad():  # the U-Net's output layers start at zero: give the network something to say
        for p in model.ema.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


def batch(n: int = 2, size: int = 16, seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    target = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    return {
        "target": target,
        "sketch": xdog_torch(target),
        "reference": target.flip(-1),
        "reference_cross": target.roll(1, 0),
        "target_recolour": target[:, [2, 0, 1]],  # a stand-in for a hue turn
        "reference_recolour": target[:, [2, 0, 1]].flip(-1),
        "name": [f"img{i}" for i in range(n)],
    }


def test_zero_scale_is_bit_identical_to_unguided_sampling():
    model, b = tiny_model(), batch()
    cond = Cond(b["sketch"], b["reference"])
    guide = ssim_guide(0.0, b["sketch"])
    assert guide is None
    assert torch.equal(model.sample(cond, seed=3, guide=guide), model.sample(cond, seed=3))
    guided = model.sample(cond, seed=3, guide=ssim_guide(50.0, b["sketch"]))
    assert not torch.equal(guided, model.sample(cond, seed=3))


def test_guidance_step_is_per_image_and_lowers_its_loss():
    b = batch(n=3)
    x = (torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(1)) * 2 - 1).requires_grad_(True)
    (grad_all,) = torch.autograd.grad(ssim_guide(10.0, b["sketch"])(x), x)
    x0 = x[:1].detach().requires_grad_(True)
    (grad_one,) = torch.autograd.grad(ssim_guide(10.0, b["sketch"][:1])(x0), x0)
    torch.testing.assert_close(grad_all[:1], grad_one, rtol=1e-4, atol=1e-4)  # a batch of 3 moves image 0 as much as a batch of 1

    def sketch_ssim(img):
        return ssim_box((xdog_torch(img) + 1) / 2, (b["sketch"] + 1) / 2, reduction="none")

    before = sketch_ssim(x.detach())
    after = sketch_ssim(x.detach() - grad_all)  # one guidance step: x <- x - s grad (1 - SSIM)
    assert (after > before).all(), (before, after)


def test_gt_target_is_an_oracle_that_needs_ground_truth():
    b = batch()
    with pytest.raises(UserError, match="oracle"):
        ssim_guide(1.0, b["sketch"], target="gt", gt=None)
    with pytest.raises(UserError, match="guidance target"):
        ssim_guide(1.0, b["sketch"], target="edges")
    with pytest.raises(UserError, match="guidance target"):
        DiffusionColorizer(net=UNet(base_channels=16, channel_mult=(1, 2), num_blocks=1, attn_heads=2),
                           guidance_target="target")
    assert is_oracle(1.0, "gt") and not is_oracle(0.0, "gt") and not is_oracle(1.0, "sketch")


class _Batches(torch.utils.data.Dataset):
    def __init__(self, b):
        self.b = b

    def __len__(self):
        return 1

    def __getitem__(self, i):
        return self.b


def _test(model, tmp_path):
    loader = torch.utils.data.DataLoader(_Batches(batch()), batch_size=None)
    trainer = pl.Trainer(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False,
                         default_root_dir=tmp_path)
    return trainer.test(model, loader, verbose=False)[0]


@pytest.mark.parametrize("target", ["gt", "sketch"])
def test_guided_test_run_marks_oracle_outputs_and_metrics(tmp_path, target):
    """Lightning tests under inference mode; guidance leaves it. Only the ground-truth target marks its outputs."""
    model = tiny_model(guidance_ssim_scale=20.0, guidance_target=target, test_output_dir=str(tmp_path / "test"))
    metrics = _test(model, tmp_path)
    marked = target == "gt"
    root = tmp_path / ("test-oracle" if marked else "test")
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith("test")) == [root.name]
    assert (root / "same" / "img0.png").is_file() and (root / "cross" / "img1.png").is_file()
    prefix = "test_oracle/" if marked else "test/"
    assert metrics and all(key.startswith(prefix) for key in metrics), metrics


def test_unguided_test_run_writes_same_outputs_as_zero_scale(tmp_path):
    off = tiny_model(test_output_dir=str(tmp_path / "off"))
    zero = tiny_model(guidance_ssim_scale=0.0, guidance_target="gt", test_output_dir=str(tmp_path / "zero"))
    assert _test(off, tmp_path) == _test(zero, tmp_path)
    for name in ("img0", "img1"):
        assert (tmp_path / "off/same" / f"{name}.png").read_bytes() == (tmp_path / "zero/same" / f"{name}.png").read_bytes()


def test_test_run_logs_the_scores_of_its_saved_files(tmp_path):
    """Every setting's colour distance is to the reference it was given, its PSNR against its own ground truth (the
    turned image for recolouring)."""
    from utils import metrics as image_metrics
    from utils.images import load_rgb, to_tensor

    model = tiny_model(test_output_dir=str(tmp_path / "test"))
    logged = _test(model, tmp_path)
    root = tmp_path / "test"

    def files(folder):
        images = torch.stack([to_tensor(load_rgb(p)) for p in sorted((root / folder).glob("*.png"))])
        return ((images + 1) * 127.5).round().to(torch.uint8)

    for setting, gt in (("same", "gt"), ("cross", "gt"), ("recolour", "gt_recolour")):
        out = files(setting)
        expected = image_metrics.colour_distance(files(f"reference_{setting}"), out).mean()
        assert logged[f"test/{setting}/colour_distance"] == pytest.approx(float(expected), rel=1e-4)
        assert logged[f"test/{setting}/psnr"] == pytest.approx(float(image_metrics.psnr(files(gt), out).mean()),
                                                               rel=1e-4)
    assert logged["test/recolour/psnr"] != pytest.approx(float(image_metrics.psnr(files("gt"),
                                                                                  files("recolour")).mean()), rel=1e-3)