"""Several references per sketch: the correspondence warp matches the sketch against the union of K references'
positions. K = 1 is the single-reference path bit for bit, padding changes nothing, the warp is a weighted mean over
the references (a duplicate adds nothing, the order of references after the first does not matter), and a model
without a warp refuses several references."""
import pytest
import torch

from models.denoiser import Cond, Denoiser
from models.guidance import GuidedDenoiser, drop_conditions
from models.schedules import PhiSchedule
from models.correspondence import CorrespondenceWarp
from models.unet import UNet

TINY = dict(base_channels=16, channel_mult=(1, 2, 2), num_blocks=1, attn_heads=2)


def _denoiser(**net) -> Denoiser:
    torch.manual_seed(0)
    unet = UNet(**TINY, **net).eval()
    torch.nn.init.normal_(unet.out[-1].weight, std=0.1)  # a zero output layer would hide every difference
    return Denoiser(unet, PhiSchedule()).eval()


def _inputs(b: int = 3, k: int = 3, size: int = 16):
    g = torch.Generator().manual_seed(1)
    x = torch.randn(b, 3, size, size, generator=g)
    sketch = torch.rand(b, 1, size, size, generator=g) * 2 - 1
    refs = torch.rand(b, k, 3, size, size, generator=g) * 2 - 1
    return x, sketch, refs


@torch.no_grad()
def test_one_reference_is_the_single_reference_path_bit_for_bit():
    d = _denoiser(ref_warp=1, ref_concat=True)
    x, sketch, refs = _inputs(k=2)
    single = d(x, 1.3, Cond(sketch, refs[:, 0]))
    torch.testing.assert_close(d(x, 1.3, Cond(sketch, refs[:, :1])), single, rtol=0, atol=0)
    padded = Cond(sketch, refs, ref_mask=torch.tensor([[True, False]] * 3))  # K = 2 in shape, 1 in fact
    torch.testing.assert_close(d(x, 1.3, padded), single, rtol=0, atol=0)


@torch.no_grad()
def test_mixed_counts_in_a_batch_equal_each_item_run_alone():
    d = _denoiser(ref_warp=1, ref_concat=True)
    x, sketch, refs = _inputs(b=3, k=3)
    mask = torch.tensor([[True, False, False], [True, True, False], [True, True, True]])
    refs = refs * mask[:, :, None, None, None]  # padding as the data pads it (zeros), masked out
    batched = d(x, 0.7, Cond(sketch, refs, ref_mask=mask))
    for i, count in enumerate(mask.sum(1).tolist()):
        alone = d(x[i:i + 1], 0.7, Cond(sketch[i:i + 1], refs[i:i + 1, :count]))
        torch.testing.assert_close(batched[i:i + 1], alone, rtol=1e-5, atol=1e-5)
    # and the references do matter: the third item with only its first reference differs
    assert (batched[2] - d(x[2:], 0.7, Cond(sketch[2:], refs[2:, 0]))[0]).abs().max() > 1e-3


@torch.no_grad()
def test_the_warp_is_a_weighted_mean_over_all_references():
    torch.manual_seed(0)
    warp = CorrespondenceWarp(8, level=1)
    g = torch.Generator().manual_seed(2)
    sketch, feats = torch.randn(2, 8, 4, 4, generator=g), torch.randn(2, 3, 8, 4, 4, generator=g)
    refs = torch.rand(2, 3, 3, 8, 8, generator=g) * 2 - 1
    one = warp(sketch, feats[:, 0], refs[:, 0])
    # a duplicate reference doubles every weight of its positions: the normalised mean is unchanged
    twice = warp(sketch, torch.stack([feats[:, 0]] * 2, 1), torch.stack([refs[:, 0]] * 2, 1))
    torch.testing.assert_close(twice, one, rtol=1e-5, atol=1e-5)
    # the order of the references does not matter to the warp
    all3 = warp(sketch, feats, refs)
    torch.testing.assert_close(warp(sketch, feats[:, [2, 0, 1]], refs[:, [2, 0, 1]]), all3, rtol=1e-5, atol=1e-5)
    # the result is a convex combination of the references' colours
    assert all3.min() >= refs.min() - 1e-5 and all3.max() <= refs.max() + 1e-5
    # chunked queries give the same warp
    warp.CHUNK_ELEMENTS = 2 * 3 * 16 * 3  # three query rows per chunk
    torch.testing.assert_close(warp(sketch, feats, refs), all3, rtol=1e-6, atol=1e-6)


@torch.no_grad()
def test_hidden_pixels_take_no_part_in_the_warp():
    """A per-pixel mask: what a reference does not show (a transparent background) changes nothing, a mask that
    shows everything is the per-reference mask, and a cell's colour is the mean of its shown pixels."""
    torch.manual_seed(0)
    warp = CorrespondenceWarp(8, level=1)
    g = torch.Generator().manual_seed(3)
    sketch, feats = torch.randn(2, 8, 4, 4, generator=g), torch.randn(2, 2, 8, 4, 4, generator=g)
    refs = torch.rand(2, 2, 3, 8, 8, generator=g) * 2 - 1
    whole = torch.ones(2, 2, 8, 8, dtype=torch.bool)
    torch.testing.assert_close(warp(sketch, feats, refs, whole), warp(sketch, feats, refs, whole[:, :, 0, 0]),
                               rtol=0, atol=0)
    shown = whole.clone()
    shown[:, 1, :, :4] = False  # the left half of the second reference is background
    out = warp(sketch, feats, refs, shown)
    repainted = refs.clone()
    repainted[:, 1, :, :, :4] = 5.0  # whatever colour lies under the background
    torch.testing.assert_close(warp(sketch, feats, repainted, shown), out, rtol=0, atol=0)
    assert (out - warp(sketch, feats, refs)).abs().max() > 1e-3  # and hiding it changes the warp
    # one shown pixel in a 2x2 cell gives that cell its colour, not a quarter of it
    one = torch.zeros(1, 1, 8, 8, dtype=torch.bool)
    one[0, 0, 0, 0] = True
    flat = torch.full((1, 1, 3, 8, 8), 0.2)
    only = warp(sketch[:1], feats[:1, :1], flat, one)
    torch.testing.assert_close(only, torch.full_like(only, 0.2))


@torch.no_grad()
def test_a_partly_shown_single_reference_goes_through_the_warp():
    d = _denoiser(ref_warp=1, ref_concat=True)
    x, sketch, refs = _inputs(k=1)
    shown = torch.ones(3, 1, 16, 16, dtype=torch.bool)
    single = d(x, 1.3, Cond(sketch, refs[:, 0]))
    torch.testing.assert_close(d(x, 1.3, Cond(sketch, refs, ref_mask=shown)), single, rtol=0, atol=0)
    shown[:, :, 8:] = False
    assert (d(x, 1.3, Cond(sketch, refs, ref_mask=shown)) - single).abs().max() > 1e-4
    with pytest.raises(ValueError, match="at least one pixel"):
        d(x, 1.3, Cond(sketch, refs, ref_mask=torch.zeros_like(shown)))
    with pytest.raises(ValueError, match="ref_mask must be"):
        d(x, 1.3, Cond(sketch, refs, ref_mask=shown[:, :, :8]))


@torch.no_grad()
def test_guidance_and_condition_dropout_take_several_references():
    d = _denoiser(ref_warp=1, ref_concat=True)
    x, sketch, refs = _inputs(b=2, k=2)
    mask = torch.tensor([[True, True], [True, False]])
    cond = Cond(sketch, refs, ref_mask=mask)
    out = GuidedDenoiser(d, 1.5, 2.0)(x, 0.5, cond)
    assert out.shape == x.shape and torch.isfinite(out).all()
    dropped = drop_conditions(cond, 0.0, 0.5, uniform=torch.tensor([[0.9, 0.9], [0.1, 0.9]]))
    assert (dropped.reference[0] == 0).all() and torch.equal(dropped.reference[1], refs[1])
    assert dropped.ref_mask is mask


def test_a_model_without_a_warp_refuses_several_references():
    x, sketch, refs = _inputs(b=1, k=2)
    with pytest.raises(ValueError, match="one reference per sketch.*multiref"):
        _denoiser()(x, 1.0, Cond(sketch, refs))
    with pytest.raises(ValueError, match="first reference"):
        _denoiser(ref_warp=1)(x, 1.0, Cond(sketch, refs, ref_mask=torch.tensor([[False, True]])))


def test_a_training_step_through_several_references_lowers_the_loss():
    torch.manual_seed(0)
    net = UNet(**TINY, ref_warp=1, ref_concat=True)
    d = Denoiser(net, PhiSchedule())
    x, sketch, refs = _inputs(b=4, k=3)
    target = refs[:, 1:].mean(dim=(1, 3, 4))[:, :, None, None].expand(-1, -1, 16, 16)  # colours of refs 1..K only
    cond = Cond(sketch, refs, ref_mask=torch.tensor([[True, True, True]] * 4))
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    losses = []
    for _ in range(15):
        loss = (d(target + 0.5 * x, 0.5, cond) - target).pow(2).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0]
