"""Discriminators: reference parameter counts, patch-map shapes, spectral norm, input pyramid, gradients, errors."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from vqdsr_core.models.discriminators import MultiScalePatchDiscriminator, NLayerDiscriminator


def n_params(m: nn.Module) -> int:
    return sum(p.numel() for p in m.parameters())


def test_parameter_counts_match_reference():
    ms = MultiScalePatchDiscriminator()
    assert len(ms.discs) == 3
    for d in ms.discs:
        assert n_params(d) == pytest.approx(2.76e6, rel=0.01)
    assert n_params(ms) == pytest.approx(8.29e6, rel=0.01)
    assert n_params(NLayerDiscriminator()) == pytest.approx(2.77e6, rel=0.01)


def test_multiscale_layers_are_spectral_normed_without_norm_layers():
    ms = MultiScalePatchDiscriminator(num_scales=2, ndf=8)
    convs = [m for m in ms.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 2 * 5
    assert all(torch.nn.utils.parametrize.is_parametrized(c, "weight") and c.bias is not None for c in convs)
    assert not any(isinstance(m, (nn.BatchNorm2d, nn.InstanceNorm2d, nn.GroupNorm)) for m in ms.modules())


def test_spectral_norm_bounds_each_layer():
    torch.manual_seed(0)
    ms = MultiScalePatchDiscriminator(num_scales=1, ndf=8).train()
    with torch.no_grad():  # raw weights far from unit norm: only the parametrisation can bring sigma to 1
        for conv in (m for m in ms.modules() if isinstance(m, nn.Conv2d)):
            conv.parametrizations.weight.original.mul_(5.0)
    for _ in range(20):  # power iteration runs once per training forward
        ms(torch.rand(1, 3, 32, 32))
    for conv in (m for m in ms.modules() if isinstance(m, nn.Conv2d)):
        w = conv.weight.detach().reshape(conv.out_channels, -1)
        sigma = torch.linalg.matrix_norm(w, ord=2).item()
        raw = torch.linalg.matrix_norm(conv.parametrizations.weight.original.detach().reshape(len(w), -1), ord=2)
        assert sigma == pytest.approx(1.0, abs=0.05) and raw.item() > 2.0


def test_multiscale_output_shapes_and_input_pyramid():
    torch.manual_seed(1)
    ms = MultiScalePatchDiscriminator(ndf=8).eval()
    x = torch.rand(2, 3, 100, 132)
    outs = ms(x)
    assert [tuple(o.shape) for o in outs] == [(2, 1, 10, 14), (2, 1, 4, 6), (2, 1, 1, 2)]
    # scale i sees the input bilinearly halved i times (align_corners=True, size h//2)
    y = x
    for i, d in enumerate(ms.discs):
        if i:
            y = F.interpolate(y, size=(y.shape[2] // 2, y.shape[3] // 2), mode="bilinear", align_corners=True)
        assert torch.allclose(d(y), outs[i], atol=1e-6)
    # and not the un-halved input: the scales really differ
    assert ms.discs[1](x).shape != outs[1].shape


def test_nlayer_output_shape_init_and_batchnorm():
    torch.manual_seed(2)
    d = NLayerDiscriminator()
    assert tuple(d(torch.rand(2, 3, 64, 64)).shape) == (2, 1, 6, 6)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    bns = [m for m in d.modules() if isinstance(m, nn.BatchNorm2d)]
    assert len(convs) == 5 and len(bns) == 3
    big = torch.cat([c.weight.detach().flatten() for c in convs[1:4]])
    assert big.std().item() == pytest.approx(0.02, rel=0.05) and abs(big.mean().item()) < 1e-3
    assert all(c.bias is None for c in convs[1:4]) and convs[0].bias is not None and convs[-1].bias is not None
    assert all(b.weight.std().item() == pytest.approx(0.02, rel=0.3) and b.bias.abs().sum() == 0 for b in bns)
    assert all(abs(b.weight.mean().item() - 1.0) < 0.01 for b in bns)


@pytest.mark.parametrize("make", [lambda: MultiScalePatchDiscriminator(ndf=8), lambda: NLayerDiscriminator(ndf=8)])
def test_gradients_reach_every_parameter(make):
    torch.manual_seed(3)
    d = make().train()
    out = d(torch.rand(2, 3, 96, 96))
    sum(o.square().mean() for o in (out if isinstance(out, list) else [out])).backward()
    dead = [n for n, p in d.named_parameters() if p.grad is None or not p.grad.abs().sum() > 0]
    assert not dead, dead


def test_bad_inputs():
    with pytest.raises(ValueError, match=r"MultiScalePatchDiscriminator.forward: expected \(B, 3, H, W\)"):
        MultiScalePatchDiscriminator(ndf=8)(torch.rand(1, 1, 64, 64))
    with pytest.raises(ValueError, match="too small for 3 scales"):
        MultiScalePatchDiscriminator(ndf=8)(torch.rand(1, 3, 64, 64))
    with pytest.raises(ValueError, match="too small"):
        NLayerDiscriminator(ndf=8)(torch.rand(1, 3, 16, 64))
    with pytest.raises(ValueError, match="num_scales"):
        MultiScalePatchDiscriminator(num_scales=0)
