"""Preconditioning limits, the U-Net's shapes and determinism, and classifier-free guidance."""
import pytest
import torch

from models.denoiser import Cond, Denoiser
from models.guidance import GuidedDenoiser, drop_conditions
from models.schedules import PhiSchedule, VPSchedule
from models.unet import UNet


def tiny_unet(**kw):
    return UNet(base_channels=16, channel_mult=(1, 2), num_blocks=1, attn_heads=2, **kw)


def test_edm_scalings_limits():
    den = Denoiser(tiny_unet(), PhiSchedule())
    c_skip, c_out, c_in = den.scalings(torch.tensor([1e-6, 0.5, 1e4], dtype=torch.float64))
    assert c_skip[0] == pytest.approx(1, abs=1e-9) and c_out[0] == pytest.approx(0, abs=1e-5)
    assert c_skip[-1] == pytest.approx(0, abs=1e-6) and c_out[-1] == pytest.approx(0.5, rel=1e-6)
    # at sigma = sigma_data: c_skip = 1/2, c_out = c_in * sigma_data^2 (Table 1)
    assert c_skip[1] == pytest.approx(0.5) and c_out[1] == pytest.approx(0.5 / 2**0.5)
    # unit variance of the network input for data of std sigma_data: c_in^2 (sigma^2 + sigma_data^2) = 1
    torch.testing.assert_close(c_in**2 * (torch.tensor([1e-6, 0.5, 1e4], dtype=torch.float64) ** 2 + 0.25),
                               torch.ones(3, dtype=torch.float64))


def test_denoiser_is_identity_at_tiny_sigma_and_uses_schedule_c_noise():
    torch.manual_seed(0)
    net = tiny_unet()
    torch.nn.init.normal_(net.out[-1].weight)  # make F non-zero
    den = Denoiser(net, PhiSchedule()).eval()
    x = torch.randn(2, 3, 16, 16)
    cond = Cond(torch.randn(2, 1, 16, 16), torch.randn(2, 3, 16, 16))
    torch.testing.assert_close(den(x, 1e-7, cond), x, atol=1e-5, rtol=0)
    seen = []
    net.register_forward_pre_hook(lambda m, args: seen.append(args[1]))
    den(x, torch.tensor([0.3, 0.6]), cond)
    torch.testing.assert_close(seen[-1], torch.tensor([0.5, 0.6 / 0.9]))


def test_eps_prediction_reconstructs_x0_from_true_noise():
    """With F = the true noise, the VP (eps) preconditioning returns x0 exactly."""
    x0, n, sigma = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8), 2.0

    class Oracle(torch.nn.Module):
        def forward(self, inp, c_noise):
            return n  # D = x + c_out F = (x0 + sigma n) - sigma n with c_out = -sigma

    den = Denoiser(Oracle(), VPSchedule(), prediction="eps")
    torch.testing.assert_close(den(x0 + sigma * n, sigma, Cond(x0[:, :1], x0)), x0)


def test_x0_prediction_has_no_skip_path_and_unit_variance_target():
    """prediction="x0": D = sigma_data F, whatever the noise in x; F's target y / sigma_data has std 1 for data
    of std sigma_data, and the EDM weighting 1 / c_out^2 is the same at every sigma (plain x0 MSE, scaled)."""
    x0, n = 0.5 * torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8)

    class Oracle(torch.nn.Module):
        def forward(self, inp, c_noise):
            return x0 / 0.5

    den = Denoiser(Oracle(), PhiSchedule(), prediction="x0")
    for sigma in (1e-4, 0.5, 80.0):  # the noise never reaches the output through a skip path
        torch.testing.assert_close(den(x0 + sigma * n, sigma, Cond(x0[:, :1], x0)), x0)
    c_skip, c_out, c_in = den.scalings(torch.tensor([1e-4, 0.5, 80.0]))
    assert torch.all(c_skip == 0) and torch.allclose(den.loss_weight(torch.tensor([1e-4, 80.0])), torch.tensor(4.0))
    torch.testing.assert_close(c_in, Denoiser(Oracle(), PhiSchedule()).scalings(torch.tensor([1e-4, 0.5, 80.0]))[2])
    with pytest.raises(ValueError, match="'x0'"):
        Denoiser(Oracle(), PhiSchedule(), prediction="v")


@pytest.mark.parametrize("size", [16, 32, 48])
def test_unet_shapes_and_eval_determinism(size):
    net = tiny_unet(attn_levels=(1,), dropout=0.1)
    x, c = torch.randn(3, 7, size, size), torch.rand(3)
    y = net.eval()(x, c)
    assert y.shape == (3, 3, size, size)
    torch.testing.assert_close(net(x, c), y, rtol=0, atol=0)


def test_unet_rejects_indivisible_size():
    with pytest.raises(ValueError, match="divisible"):
        UNet(channel_mult=(1, 2, 4))(torch.randn(1, 7, 30, 30), torch.rand(1))


def test_paper_unet_defaults():
    net = UNet()
    n_params = sum(p.numel() for p in net.parameters())
    assert 45e6 < n_params < 65e6  # the paper's ~52M network (base 64, mult 1,2,4,8)
    assert net.conv_in.in_channels == 7 and net.out[-1].out_channels == 3


def forward_flops(size: int, **kw) -> tuple[int, float]:
    """Parameters and forward FLOPs per image of UNet(**kw), counted on the meta device (no computation)."""
    from torch.utils.flop_counter import FlopCounterMode

    with torch.device("meta"):
        net = UNet(**kw)
        x, c = torch.empty(1, 7, size, size), torch.empty(1)
    with FlopCounterMode(display=False) as counter:
        net(x, c)
    return sum(p.numel() for p in net.parameters()), counter.get_total_flops()


def test_published_layout_has_the_published_cost():
    # The published SSIMBaD network: 52.3M parameters, 13.1 TFLOP per training step of 16 images at 256 px
    # (forward + backward = 3 forwards), i.e. 273 GFLOP per image forward. Average-pool / nearest resampling
    # without convs and no input-conv skip give that layout (54.0M parameters: this U-Net's noise embedding sets a
    # scale and a shift, not a shift alone); the DDPM/ADM layout costs 29 % more.
    params, flops = forward_flops(256, resample="pool", input_skip=False)
    assert flops == pytest.approx(273.4e9, rel=0.01) and params == pytest.approx(52.3e6, rel=0.04)
    adm_params, adm_flops = forward_flops(256)
    assert adm_flops / flops == pytest.approx(1.28, abs=0.01) and adm_params > params


@pytest.mark.parametrize("resample,input_skip", [("pool", True), ("pool", False), ("conv", False)])
def test_resampling_layouts_run_and_train(resample, input_skip):
    torch.manual_seed(0)
    net = tiny_unet(resample=resample, input_skip=input_skip)
    assert not any(isinstance(m, torch.nn.Conv2d) and m.stride == (2, 2) for m in net.modules()) or resample == "conv"
    torch.nn.init.normal_(net.out[-1].weight, std=0.1)
    x, c = torch.randn(2, 7, 16, 16), torch.rand(2)
    y = net(x, c)
    assert y.shape == (2, 3, 16, 16)
    y.square().sum().backward()
    assert all(p.grad is not None for p in net.parameters())  # every block is on the path (no unused skip)


@pytest.mark.parametrize("base", [24, 48, 56, 80])
def test_widths_that_are_not_multiples_of_32_build_and_run(base):
    net = UNet(base_channels=base, channel_mult=(1, 3), num_blocks=1, attn_heads=2, mid_attention=False)
    assert net(torch.randn(1, 7, 8, 8), torch.rand(1)).shape == (1, 3, 8, 8)


def test_unknown_resampling_is_refused():
    with pytest.raises(ValueError, match="resample must be one of conv, pool"):
        tiny_unet(resample="bilinear")


def test_gradient_checkpointing_gives_same_gradients():
    torch.manual_seed(0)
    a, b = tiny_unet(), tiny_unet(gradient_checkpointing=True)
    b.load_state_dict(a.state_dict())
    for net in (a, b):
        torch.nn.init.normal_(net.out[-1].weight, std=0.1)
    b.load_state_dict(a.state_dict())
    x, c = torch.randn(2, 7, 16, 16), torch.rand(2)
    a(x, c).square().sum().backward()
    b(x, c).square().sum().backward()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pa.grad, pb.grad)


class AffineDenoiser(torch.nn.Module):
    """A denoiser whose output depends non-additively on both conditions."""

    def forward(self, x, sigma, cond):
        return 0.5 * x + cond.sketch * cond.reference + cond.reference.mean((1, 2, 3), keepdim=True)


def test_guidance_unit_scales_equal_plain_conditional():
    den = AffineDenoiser()
    x = torch.randn(2, 3, 8, 8)
    cond = Cond(torch.randn(2, 1, 8, 8), torch.randn(2, 3, 8, 8))
    plain = den(x, 1.0, cond)
    torch.testing.assert_close(GuidedDenoiser(den, 1.0, 1.0)(x, 1.0, cond), plain)
    # the nested combination is exact at unit scales even when every branch is evaluated
    guided = GuidedDenoiser(den, 1.0, 1.0 + 1e-12)(x, 1.0, cond)
    torch.testing.assert_close(guided, plain)
    # scale 0 for both: the unconditional prediction
    torch.testing.assert_close(GuidedDenoiser(den, 0.0, 0.0)(x, 1.0, cond), 0.5 * x)


def test_condition_dropout_rates():
    b = 20000
    cond = Cond(torch.ones(b, 1, 1, 1), torch.ones(b, 3, 1, 1))
    out = drop_conditions(cond, 0.1, 0.3, generator=torch.Generator().manual_seed(0))
    drop_s = (out.sketch == 0).flatten(1).all(1).float()
    drop_r = (out.reference == 0).flatten(1).all(1).float()
    assert drop_s.mean() == pytest.approx(0.1, abs=0.01) and drop_r.mean() == pytest.approx(0.3, abs=0.01)
    # independent: P(both) = 0.03
    assert (drop_s * drop_r).mean() == pytest.approx(0.03, abs=0.006)
