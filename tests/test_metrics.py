"""Metrics: BT.709 Y PSNR / SSIM with border crop, LPIPS (offline VGG16), temporal error, still flicker."""

from __future__ import annotations

import math

import pytest
import torch

from vqdsr_core.losses import gaussian_blur
from vqdsr_core.metrics import LPIPS, psnr_rgb, psnr_y, rgb_to_y, ssim_y, still_flicker, still_steps, temporal_error


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    return gaussian_blur(x, 2 * math.ceil(3 * sigma) + 1, sigma)


def test_rgb_to_y_bt709():
    img = torch.zeros(3, 2, 2)
    img[1] = 1.0  # pure green
    assert rgb_to_y(img).flatten().tolist() == pytest.approx([0.7152] * 4)
    assert rgb_to_y(torch.ones(2, 3, 4, 4)).shape == (2, 1, 4, 4)


def test_psnr_y(cartoon_tensor):
    hr = cartoon_tensor(2, 32, 32, seed=1) * 0.8
    assert psnr_y(hr, hr) == math.inf
    # a constant offset c on every channel shifts Y by c (BT.709 weights sum to 1): PSNR = -20 log10(c)
    for c in (0.01, 0.05):
        assert psnr_y(hr + c, hr) == pytest.approx(-20 * math.log10(c), abs=1e-4)  # float32 inputs
    # differences inside the 4-px border are cropped away; crop=0 sees them
    edged = hr.clone()
    edged[..., :4, :] += 0.1
    assert psnr_y(edged, hr) == math.inf
    assert psnr_y(edged, hr, crop=0) < 40
    assert psnr_y(hr[0] + 0.05, hr[0]) == pytest.approx(-20 * math.log10(0.05), abs=1e-4)  # single frame
    with pytest.raises(ValueError, match="psnr_y"):
        psnr_y(hr, hr[:1])


def test_psnr_rgb_sees_colour_shifts_that_luma_hides(cartoon_tensor):
    hr = cartoon_tensor(2, 32, 32, seed=1) * 0.8 + 0.1
    assert psnr_rgb(hr, hr) == math.inf
    shift = hr.clone()  # +c on red, -c*wR/wB on blue: Y unchanged, RGB MSE = (c^2 + (c*wR/wB)^2) / 3
    c = 0.01
    shift[:, 0] += c
    shift[:, 2] -= c * 0.2126 / 0.0722
    assert psnr_y(shift, hr, crop=0) > 60
    want = -10 * math.log10((c**2 + (c * 0.2126 / 0.0722) ** 2) / 3)
    assert psnr_rgb(shift, hr) == pytest.approx(want, abs=1e-3)
    with pytest.raises(ValueError, match="psnr_rgb"):
        psnr_rgb(hr, hr[:1])


def test_ssim_y(cartoon_tensor):
    hr = cartoon_tensor(1, 48, 48, seed=2)
    assert ssim_y(hr, hr) == pytest.approx(1.0, abs=1e-9)
    s1, s3 = ssim_y(blur(hr, 1.0), hr), ssim_y(blur(hr, 3.0), hr)
    assert 1.0 > s1 > s3 > 0
    with pytest.raises(ValueError, match="ssim_y"):
        ssim_y(hr[..., :16, :16], hr[..., :16, :16])


def test_ssim_y_equals_the_2d_gaussian_window(cartoon_tensor):
    """The separable filter gives Wang et al.'s 11x11 window: checked against one direct 2-D convolution."""
    import torch.nn.functional as F

    hr = cartoon_tensor(2, 40, 56, seed=6)
    sr = blur(hr, 0.8)
    ys, yh = rgb_to_y(sr.double())[..., 4:-4, 4:-4], rgb_to_y(hr.double())[..., 4:-4, 4:-4]
    x = torch.arange(11, dtype=torch.float64) - 5
    g = torch.exp(-(x**2) / 4.5)
    win = (g[:, None] * g[None, :] / g.sum() ** 2).view(1, 1, 11, 11)
    mx, my = F.conv2d(ys, win), F.conv2d(yh, win)
    sxx, syy = F.conv2d(ys * ys, win) - mx**2, F.conv2d(yh * yh, win) - my**2
    sxy = F.conv2d(ys * yh, win) - mx * my
    c1, c2 = 0.01**2, 0.03**2
    ref = ((2 * mx * my + c1) * (2 * sxy + c2)) / ((mx**2 + my**2 + c1) * (sxx + syy + c2))
    assert ssim_y(sr, hr) == pytest.approx(ref.flatten(1).mean(1).mean().item(), abs=1e-12)


def test_lpips_ordering(cartoon_tensor):
    metric = LPIPS()
    hr = cartoon_tensor(2, 64, 64, seed=3)
    d0 = metric(hr, hr)
    d1, d3 = metric(blur(hr, 1.0), hr), metric(blur(hr, 3.0), hr)
    assert d0.shape == (2,) and d0.abs().max() < 1e-6
    assert (d3 > d1).all() and (d1 > 0.01).all()
    assert metric(hr[0], blur(hr[:1], 1.0)[0]).item() == pytest.approx(
        d1[0].item(), rel=1e-4
    )  # symmetric, single frame
    with torch.no_grad():  # reference features computed once give the same distances
        reused = metric.compare(metric.features(blur(hr, 3.0)), metric.features(hr))
    assert torch.allclose(reused, d3, rtol=1e-5, atol=1e-7)


def test_lpips_as_a_loss_descends(cartoon_tensor):
    # the VSR trainer's lpips_weight uses this module as a loss: gradients reach the image, and a few steps down
    # them bring a blurred image closer to the reference
    metric = LPIPS()
    hr = cartoon_tensor(1, 64, 64, seed=5)
    x = blur(hr, 2.0).clone().requires_grad_(True)
    start = metric(x, hr).sum()
    opt = torch.optim.Adam([x], lr=1e-2)
    for _ in range(10):
        opt.zero_grad()
        loss = metric(x, hr).sum()
        loss.backward()
        assert x.grad.abs().sum() > 0
        opt.step()
    assert metric(x.detach(), hr).item() < 0.85 * start.item()


def test_temporal_error(cartoon_tensor):
    hr = cartoon_tensor(5, 32, 32, seed=4)
    assert temporal_error(hr + 0.1, hr) == pytest.approx(0.0, abs=1e-7)  # float32 rounding of hr + 0.1
    noisy = hr + 0.05 * torch.randn(hr.shape, generator=torch.Generator().manual_seed(0))
    assert temporal_error(noisy, hr) > 0.01
    # a jump only at frame 3 counts unless frame 3 starts a new shot
    jump = hr.clone()
    jump[3:] += 0.2
    assert temporal_error(jump, hr) == pytest.approx(0.2 / 4, rel=1e-6)
    assert temporal_error(jump, hr, cuts=[3]) == pytest.approx(0.0, abs=1e-7)
    with pytest.raises(ValueError, match="temporal_error"):
        temporal_error(hr[:1], hr[:1])


def test_still_flicker_scores_only_frames_where_the_hr_holds(cartoon_tensor):
    moving = cartoon_tensor(4, 32, 32, seed=5, motion=3)
    hr = torch.cat([moving[:2], moving[1:2].repeat(3, 1, 1, 1), moving[2:]])  # frames 1..4 identical
    hr[3] += 0.2 / 255  # below half an 8-bit step: still counts as unchanged
    assert still_steps(hr) == [2, 3, 4]
    assert still_steps(hr, cuts=[3]) == [2, 4]
    assert still_steps(hr, tol=0.1 / 255) == [2]  # frames 2->3 and 3->4 now count as changes
    sr = hr.clone()
    sr[5:] += 0.3  # an error only where the HR moves: tE sees it, the still figure does not
    assert still_flicker(sr, hr) == pytest.approx(0.0, abs=1e-7)
    assert temporal_error(sr, hr) > 0.01
    flick = hr.clone()
    flick[3] += 0.04  # the shot holds but the output shimmers on frame 3: pairs 2->3 and 3->4 each see 0.04
    assert still_flicker(flick, hr) == pytest.approx(2 * 0.04 / 3, rel=1e-5)
    assert still_flicker(flick, hr, cuts=[3]) == pytest.approx(0.04 / 2, rel=1e-5)
    with pytest.raises(ValueError, match="still_flicker"):
        still_flicker(moving, moving)
