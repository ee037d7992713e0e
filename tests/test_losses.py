"""Losses: L1, USM sharpening, perceptual loss, LSGAN / hinge and the VQGAN adaptive weight."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from vqdsr_core import losses
from vqdsr_core.losses import PerceptualLoss, gaussian_blur, usm_sharpen


def test_l1_loss():
    a, b = torch.rand(2, 3, 4, 4), torch.rand(2, 3, 4, 4)
    assert losses.l1_loss(a, b).item() == pytest.approx((a - b).abs().mean().item())
    with pytest.raises(ValueError, match="l1_loss"):
        losses.l1_loss(a, b[:1])


def test_lowpass_l1_sees_area_offsets_not_detail():
    img = torch.rand(2, 3, 16, 24)
    assert losses.lowpass_l1(img, img).item() == 0
    assert losses.lowpass_l1(img + 0.1, img).item() == pytest.approx(0.1, abs=1e-6)  # a colour shift in full
    # zero-mean detail inside each 8x8 block (a +-0.2 checkerboard): no block mean moves, though per-pixel L1 is 0.2
    checker = ((torch.arange(16).view(16, 1) + torch.arange(24)) % 2 * 2 - 1).float() * 0.2
    assert losses.lowpass_l1(img + checker, img).item() == pytest.approx(0, abs=1e-6)
    assert losses.l1_loss(img + checker, img).item() == pytest.approx(0.2, abs=1e-6)
    with pytest.raises(ValueError, match="lowpass_l1"):
        losses.lowpass_l1(img, img[:1])
    with pytest.raises(ValueError, match="lowpass_l1: block"):
        losses.lowpass_l1(img, img, block=32)


def test_gaussian_kernel_follows_opencv_rule():
    k = losses._gaussian_1d(51, 0.0)
    assert k.sum().item() == pytest.approx(1.0, abs=1e-6)
    x = torch.arange(51, dtype=torch.float64) - 25
    expected = torch.exp(-(x**2) / (2 * 8.0**2))  # sigma = 0.3 * ((51 - 1) / 2 - 1) + 0.8 = 8
    torch.testing.assert_close(k.double(), expected / expected.sum(), atol=1e-7, rtol=0)
    cv2 = pytest.importorskip("cv2")
    torch.testing.assert_close(k.double(), torch.from_numpy(cv2.getGaussianKernel(51, 0)[:, 0]), atol=1e-7, rtol=0)


def test_usm_sharpen(cartoon_tensor):
    flat = torch.full((1, 3, 40, 40), 0.4)
    torch.testing.assert_close(usm_sharpen(flat), flat)
    # a ramp of 1/255 per pixel never exceeds the threshold: unchanged
    ramp = (torch.arange(40.0) / 255 + 0.3).view(1, 1, 1, 40).expand(1, 3, 40, 40)
    torch.testing.assert_close(usm_sharpen(ramp), ramp)
    img = cartoon_tensor(2, 48, 48, seed=4)
    sharp = usm_sharpen(img)
    assert sharp.shape == img.shape and sharp.min() >= 0 and sharp.max() <= 1
    assert (sharp - img).abs().max() > 0.05
    # sharpening raises local contrast: the high-pass energy grows
    hp = lambda t: (t - gaussian_blur(t, 5)).pow(2).mean()  # noqa: E731
    assert hp(sharp) > hp(img) * 1.05
    # (B, N, 3, H, W) clips are sharpened frame by frame
    clip = img.view(1, 2, 3, 48, 48)
    torch.testing.assert_close(usm_sharpen(clip).view_as(img), sharp)
    # weight 0 is the identity
    torch.testing.assert_close(usm_sharpen(img, weight=0.0), img)
    with pytest.raises(ValueError, match="usm_sharpen"):
        usm_sharpen(torch.rand(3, 8, 8))


class _Stub(nn.Module):
    """Feature extractor whose features are the input and twice the input."""

    def forward(self, x):
        return {"a": x, "b": 2 * x}


def test_perceptual_loss_weights_and_normalisation():
    loss = PerceptualLoss({"a": 1.0, "b": 0.5}, perceptual_weight=2.0, vgg=_Stub())
    p, t = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    std = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)
    l1_norm = ((p - t) / std).abs().mean()
    assert loss(p, t).item() == pytest.approx((2.0 * (l1_norm + 0.5 * 2 * l1_norm)).item(), rel=1e-5)
    clip_p, clip_t = p.view(1, 2, 3, 8, 8), t.view(1, 2, 3, 8, 8)
    assert loss(clip_p, clip_t).item() == pytest.approx(loss(p, t).item(), rel=1e-6)
    with pytest.raises(ValueError, match="PerceptualLoss"):
        loss(p, t[:1])
    with pytest.raises(ValueError, match="no \\['c'\\]"):
        PerceptualLoss({"c": 1.0}, vgg=_Stub())(p, t)


def test_perceptual_loss_vgg16(cartoon_tensor):
    loss = PerceptualLoss()
    img = cartoon_tensor(2, 64, 64, seed=5)
    assert loss(img, img).item() == 0.0
    soft = gaussian_blur(img, 7, 1.0)
    softer = gaussian_blur(img, 19, 3.0)
    assert 0 < loss(soft, img).item() < loss(softer, img).item()
    pred = soft.clone().requires_grad_(True)
    loss(pred, img).backward()
    assert pred.grad is not None and pred.grad.abs().sum() > 0
    assert not any(p.requires_grad for p in loss.vgg.parameters())
    loss.train()
    assert not loss.vgg.training


def test_lsgan_loss():
    zeros, ones = torch.zeros(2, 1, 4, 4), torch.ones(2, 1, 4, 4)
    assert losses.lsgan_loss(zeros, True).item() == 1.0
    assert losses.lsgan_loss(zeros, False).item() == 0.0
    assert losses.lsgan_loss(ones, True).item() == 0.0
    half = torch.full((1, 1, 3, 3), 0.5)
    # multi-scale: mean over scales ((1-0)^2 and (1-0.5)^2) -> 0.625
    assert losses.lsgan_loss([zeros, half], True).item() == pytest.approx(0.625)
    with pytest.raises(ValueError, match="discriminator output"):
        losses.lsgan_loss([], True)


def test_hinge_losses():
    real, fake = torch.tensor([2.0, 0.5]), torch.tensor([-2.0, 0.0])
    # relu(1 - real) = [0, 0.5] -> 0.25; relu(1 + fake) = [0, 1] -> 0.5; 0.5 * (0.25 + 0.5)
    assert losses.hinge_d_loss(real, fake).item() == pytest.approx(0.375)
    assert losses.hinge_d_loss([real, real], [fake, fake]).item() == pytest.approx(0.375)
    assert losses.hinge_g_loss(fake).item() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="hinge_d_loss"):
        losses.hinge_d_loss([real], [fake, fake])


def test_vq_adaptive_weight():
    w = nn.Parameter(torch.randn(4, 3))
    a, b = torch.randn(4, 3), torch.randn(4, 3)
    nll, g = (w * a).sum(), (w * b).sum()  # gradients a and b
    lam = losses.vq_adaptive_weight(nll, g, w, disc_weight=0.8)
    expected = a.norm() / (b.norm() + 1e-4) * 0.8
    assert lam.item() == pytest.approx(expected.item(), rel=1e-5)
    assert not lam.requires_grad
    # a GAN loss with a vanishing gradient hits the upper clamp
    tiny = (w * 0.0).sum()
    assert losses.vq_adaptive_weight((w * a).sum(), tiny, w, disc_weight=1.0).item() == pytest.approx(1e4)
    with pytest.raises(ValueError, match="does not depend"):
        losses.vq_adaptive_weight((w * a).sum(), (nn.Parameter(torch.ones(1)) * 2).sum(), w)


def test_temporal_difference_loss():
    gt = torch.rand(2, 5, 3, 8, 8)
    # a constant offset (same change as the GT) costs nothing beyond eps; flicker on a still clip does
    assert losses.temporal_difference_loss(gt + 0.1, gt, eps=0).item() == pytest.approx(0.0, abs=1e-6)
    still = gt[:, :1].expand(-1, 5, -1, -1, -1)
    flicker = still + 0.05 * torch.tensor([1.0, -1, 1, -1, 1]).view(1, 5, 1, 1, 1)
    assert losses.temporal_difference_loss(flicker, still, eps=0).item() == pytest.approx(0.1, rel=1e-5)
    # Charbonnier: never below eps
    assert losses.temporal_difference_loss(still, still, eps=1e-3).item() == pytest.approx(1e-3, rel=1e-4)
    with pytest.raises(ValueError, match="temporal_difference_loss"):
        losses.temporal_difference_loss(gt[:, :1], gt[:, :1])


def test_temporal_difference_loss_hold_weight():
    gt = torch.rand(1, 4, 3, 8, 8)
    gt[:, 2] = gt[:, 1]  # frames 1 and 2 are one held drawing: pair (1, 2) is held, pairs (0, 1) and (2, 3) move
    sr = gt + 0.05 * torch.rand(1, 4, 3, 8, 8)
    err = ((sr[:, 1:] - sr[:, :-1]) - (gt[:, 1:] - gt[:, :-1])).abs().mean((2, 3, 4))[0]  # per pair, eps = 0
    plain = losses.temporal_difference_loss(sr, gt, eps=0)
    assert losses.temporal_difference_loss(sr, gt, eps=0, hold_weight=1.0).item() == pytest.approx(plain.item())
    assert plain.item() == pytest.approx(err.mean().item(), rel=1e-5)
    weighted = losses.temporal_difference_loss(sr, gt, eps=0, hold_weight=4.0).item()
    assert weighted == pytest.approx(((err[0] + 4 * err[1] + err[2]) / 3).item(), rel=1e-5)
    assert losses.temporal_difference_loss(sr, gt, eps=0, hold_weight=0.0).item() == pytest.approx(
        ((err[0] + err[2]) / 3).item(), rel=1e-5
    )
    with pytest.raises(ValueError, match="hold_weight must be >= 0"):
        losses.temporal_difference_loss(sr, gt, hold_weight=-1.0)


def test_pingpong_clip_and_loss():
    clip = torch.arange(4.0).view(1, 4, 1, 1, 1).expand(1, 4, 3, 2, 2)
    pp = losses.pingpong_clip(clip)
    assert pp[0, :, 0, 0, 0].tolist() == [0, 1, 2, 3, 2, 1, 0]
    assert losses.pingpong_loss(pp, eps=0).item() == 0.0  # each frame's two outputs agree
    drift = pp.clone()
    drift[:, 4:] += 0.2  # the backward half of frames 2, 1, 0 is off by 0.2; frame 3 (the turn) is shared
    assert losses.pingpong_loss(drift, eps=0).item() == pytest.approx(0.2, rel=1e-5)
    for bad in (torch.rand(1, 4, 3, 2, 2), torch.rand(3, 2, 2)):
        with pytest.raises(ValueError, match="pingpong_loss"):
            losses.pingpong_loss(bad)
