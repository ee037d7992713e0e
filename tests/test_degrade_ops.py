"""Blur, noise, resize and the analogue operators: kernel laws, statistics, shapes and input checks."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from vqdsr_core.degrade import analog, check_clip
from vqdsr_core.degrade.blur import apply_blur, filter2d, gaussian_kernel, sample_blur
from vqdsr_core.degrade.noise import add_gaussian_noise, sample_noise
from vqdsr_core.degrade.resize import apply_down, sample_down


def kernel_cov(k: torch.Tensor) -> np.ndarray:
    r = np.arange(k.shape[0]) - k.shape[0] // 2
    x, y = np.meshgrid(r, r, indexing="xy")
    k = k.double().numpy()
    return np.array([[(k * x * x).sum(), (k * x * y).sum()], [(k * x * y).sum(), (k * y * y).sum()]])


# ---- blur ----------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("sx,sy,theta", [(1.5, 1.5, 0.0), (2.0, 0.8, 0.6), (1.0, 2.5, -2.0)])
def test_kernel_is_normalised_with_the_requested_covariance(sx, sy, theta):
    k = gaussian_kernel(21, sx, sy, theta)
    assert k.shape == (21, 21)
    assert float(k.sum()) == pytest.approx(1.0, abs=1e-6)
    assert (k >= 0).all()
    c, s = math.cos(theta), math.sin(theta)
    rot = np.array([[c, -s], [s, c]])
    want = rot @ np.diag([sx**2, sy**2]) @ rot.T
    np.testing.assert_allclose(kernel_cov(k), want, atol=0.02 * max(sx, sy) ** 2)


def test_blur_sampling_follows_the_paper_ranges():
    rng = np.random.default_rng(0)
    draws = [sample_blur(rng) for _ in range(3000)]
    iso = [d for d in draws if d["kind"] == "iso"]
    aniso = [d for d in draws if d["kind"] == "aniso"]
    assert len(iso) / len(draws) == pytest.approx(0.7, abs=0.03)
    s = np.array([d["sigma_x"] for d in iso])
    assert s.min() >= 0.2 and s.max() <= 4.0 and s.min() < 0.3 and s.max() > 3.9
    assert all(d["sigma_x"] == d["sigma_y"] and d["kernel_size"] == 21 for d in iso)
    sx, sy, th = (np.array([d[k] for d in aniso]) for k in ("sigma_x", "sigma_y", "theta"))
    assert 0.2 <= sx.min() and sx.max() <= 4.0 and 0.8 <= sy.min() and sy.max() <= 3.0
    assert -math.pi <= th.min() < -3.0 and 3.0 < th.max() <= math.pi


def test_filter2d_matches_reflect_padded_correlation():
    x = torch.rand(2, 3, 30, 41)
    k = torch.rand(7, 7)
    ref = F.conv2d(F.pad(x.reshape(6, 1, 30, 41), (3, 3, 3, 3), mode="reflect"), k[None, None]).reshape(x.shape)
    torch.testing.assert_close(filter2d(x, k), ref, atol=1e-5, rtol=1e-5)


def test_blur_keeps_flat_frames_and_removes_detail(cartoon_tensor):
    flat = torch.full((2, 3, 32, 32), 0.4)
    p = {"kind": "iso", "sigma_x": 3.0, "sigma_y": 3.0, "theta": 0.0, "kernel_size": 21}
    torch.testing.assert_close(apply_blur(flat, p), flat, atol=1e-5, rtol=0)
    x = cartoon_tensor(2, 64, 64)
    y = apply_blur(x, p)
    grad = lambda t: (t[..., 1:] - t[..., :-1]).abs().mean()  # noqa: E731
    assert grad(y) < 0.5 * grad(x)
    assert float(y.mean()) == pytest.approx(float(x.mean()), abs=0.01)


# ---- noise ---------------------------------------------------------------------------------------------------


def test_noise_statistics_per_frame():
    rng = np.random.default_rng(1)
    params = sample_noise(rng, 6, sigma=(2.0, 10.0), gray_prob=0.5)
    params["gray"] = [True, False, True, False, True, False]
    x = torch.full((6, 3, 96, 96), 0.5)
    y = add_gaussian_noise(x, params)
    res = (y - x) * 255
    for t in range(6):
        assert float(res[t].std()) == pytest.approx(params["sigma"][t], rel=0.05)
        assert abs(float(res[t].mean())) < 0.1 * params["sigma"][t]
        same = torch.equal(res[t, 0], res[t, 1]) and torch.equal(res[t, 1], res[t, 2])
        assert same == params["gray"][t]
        if not params["gray"][t]:
            corr = np.corrcoef(res[t, 0].flatten().numpy(), res[t, 1].flatten().numpy())[0, 1]
            assert abs(corr) < 0.05
    assert torch.equal(add_gaussian_noise(x, params), y)  # the stored seed makes it reproducible
    assert not torch.equal(add_gaussian_noise(x, {**params, "seed": params["seed"] + 1}), y)


def test_noise_sampling_and_clipping():
    rng = np.random.default_rng(2)
    p = sample_noise(rng, 4000)
    s = np.array(p["sigma"])
    assert 0 <= s.min() < 0.1 and 9.9 < s.max() <= 10
    assert np.mean(p["gray"]) == pytest.approx(0.5, abs=0.03)
    y = add_gaussian_noise(torch.ones(2, 3, 8, 8), {"sigma": [50.0, 50.0], "gray": [False, True], "seed": 0})
    assert y.max() <= 1 and y.min() >= 0 and y.min() < 1


# ---- resize --------------------------------------------------------------------------------------------------


def test_down_mode_probabilities_and_shapes():
    rng = np.random.default_rng(3)
    modes = [sample_down(rng)["mode"] for _ in range(3000)]
    for m, p in zip(("area", "bilinear", "bicubic"), (0.3, 0.3, 0.4)):
        assert modes.count(m) / len(modes) == pytest.approx(p, abs=0.03)
    x = torch.rand(3, 3, 32, 48)
    for m in ("area", "bilinear", "bicubic"):
        assert apply_down(x, {"mode": m, "scale": 4, "antialias": True}).shape == (3, 3, 8, 12)
    area = apply_down(x, {"mode": "area", "scale": 4})
    torch.testing.assert_close(area[0, 0, 1, 2], x[0, 0, 4:8, 8:12].mean())


def test_antialiased_down_suppresses_a_nyquist_pattern():
    checker = ((torch.arange(64)[:, None] + torch.arange(64)[None, :]) % 2).float().expand(1, 3, 64, 64)
    for m in ("bilinear", "bicubic"):
        aa = apply_down(checker, {"mode": m, "scale": 4, "antialias": True})
        assert float(aa.std()) < 0.05 and float(aa.mean()) == pytest.approx(0.5, abs=0.05)
    plain = apply_down(torch.arange(64.0).div(64).expand(1, 3, 64, 64).contiguous(), {"mode": "bilinear", "scale": 4})
    assert plain.shape == (1, 3, 16, 16)
    with pytest.raises(ValueError, match=r"apply_down: .*multiple of the scale 4"):
        apply_down(torch.rand(1, 3, 30, 32), {"mode": "area", "scale": 4})


# ---- analogue operators --------------------------------------------------------------------------------------


def step_clip(lo: float = 0.3, hi: float = 0.7) -> torch.Tensor:
    x = torch.full((1, 3, 32, 64), lo)
    x[..., 32:] = hi
    return x


@pytest.mark.parametrize(
    "params", [{"kind": "sharpen", "amount": 2.0, "sigma": 1.5}, {"kind": "sinc", "cutoff": 1.0, "kernel_size": 15}]
)
def test_ringing_overshoots_a_step_edge(params):
    x = step_clip()
    y = analog.ringing(x, params)
    assert float(y.max()) > 0.72 and float(y.min()) < 0.28  # halo / ripple beyond both plateaus
    assert torch.allclose(y[..., 0], x[..., 0], atol=0.02)  # far from the edge: untouched
    k = analog.sinc_kernel(15, 1.0)
    assert float(k.sum()) == pytest.approx(1.0, abs=1e-6) and float(k.min()) < 0


def test_aliasing_uses_input_values_and_breaks_thin_lines():
    x = torch.zeros(1, 3, 48, 48)
    x[0, :, ::3, :] = 1.0  # 16 one-pixel horizontal lines
    y = analog.aliasing(x, {"factor": 2.5, "up_mode": "nearest"})
    assert y.shape == x.shape
    assert set(torch.unique(y).tolist()) <= {0.0, 1.0}
    lit = (y[0, 0].amax(dim=1) > 0).int()
    lines = int(((lit[1:] - lit[:-1]) == 1).sum()) + int(lit[0])
    assert lines < 16  # some lines vanished: the sampling grid beats against the pattern
    d = torch.zeros(1, 3, 48, 48)
    idx = torch.arange(48)
    d[0, :, idx, idx] = 1.0  # a one-pixel diagonal becomes a staircase of blocks
    yd = analog.aliasing(d, {"factor": 2.5, "up_mode": "nearest"})
    assert int((yd[0, 0] > 0).sum(dim=1).max()) >= 2


def test_chroma_bleed_and_shift_touch_chroma_only():
    x = torch.full((1, 3, 32, 64), 0.4)
    x[:, 0, :, :32] = 0.7  # reddish | bluish, well inside the gamut
    x[:, 2, :, 32:] = 0.7
    y_in = analog.rgb_to_ycbcr(x)
    for fn, p in (
        (analog.chroma_bleed, {"sigma_x": 3.0, "sigma_y": 0.5}),
        (analog.chroma_shift, {"dx": 2.0, "dy": 0.0}),
    ):
        y = analog.rgb_to_ycbcr(fn(x, p))
        assert torch.allclose(y[:, 0], y_in[:, 0], atol=0.02), fn.__name__  # luma kept (up to clamping)
        assert (y[:, 1:] - y_in[:, 1:]).abs().amax() > 0.05, fn.__name__  # the chroma step is 0.2
        assert torch.allclose(y[..., :4], y_in[..., :4], atol=1e-4)  # flat area away from the edge untouched
    shifted = analog.rgb_to_ycbcr(analog.chroma_shift(x, {"dx": 2.0, "dy": 0.0}))
    torch.testing.assert_close(shifted[:, 1:, :, 34], y_in[:, 1:, :, 32], atol=1e-4, rtol=0)
    gray = torch.full((1, 3, 16, 16), 0.5)
    torch.testing.assert_close(analog.chroma_bleed(gray, {"sigma_x": 2.0, "sigma_y": 1.0}), gray, atol=1e-5, rtol=0)


def test_analog_sampling_is_seeded_and_validated():
    probs = {k: 1.0 for k in analog.ANALOG_OPS if k != "composite"}
    a = analog.sample_analog(np.random.default_rng(5), probs)
    b = analog.sample_analog(np.random.default_rng(5), probs)
    assert a == b and a["composite"] is None and all(a[k] is not None for k in probs)
    x = torch.rand(2, 3, 24, 24)
    assert torch.equal(analog.apply_analog(x, a), analog.apply_analog(x, b))
    with pytest.raises(ValueError, match="sample_analog: unknown operators"):
        analog.sample_analog(np.random.default_rng(0), {"vhs": 1.0})
    with pytest.raises(ValueError, match="sample_aliasing: factor"):
        analog.sample_aliasing(np.random.default_rng(0), factor=(3.0, 2.0))


# ---- bad input -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "clip,match",
    [
        (torch.rand(3, 16, 16), "shape \\(N, 3, H, W\\)"),
        (torch.rand(1, 4, 16, 16), "shape \\(N, 3, H, W\\)"),
        (torch.randint(0, 255, (1, 3, 8, 8), dtype=torch.uint8), "float clip"),
        (torch.rand(1, 3, 8, 8) * 2, "in \\[0, 1\\]"),
        (torch.full((1, 3, 8, 8), float("nan")), "finite"),
        (np.zeros((1, 3, 8, 8), np.float32), "torch.Tensor"),
    ],
)
def test_bad_clips_are_named_errors(clip, match):
    with pytest.raises((ValueError, TypeError), match=f"apply_blur: .*{match}"):
        apply_blur(clip, {"kind": "iso", "sigma_x": 1.0, "sigma_y": 1.0, "theta": 0.0, "kernel_size": 21})
    with pytest.raises((ValueError, TypeError), match="myfunc"):
        check_clip(clip, "myfunc")


def test_bad_sampler_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="sample_blur: kernel_size"):
        sample_blur(rng, kernel_size=20)
    with pytest.raises(ValueError, match="sample_blur: iso_sigma"):
        sample_blur(rng, iso_prob=1.0, iso_sigma=(4.0, 0.2))
    with pytest.raises(ValueError, match="sample_down: probs"):
        sample_down(rng, probs=(0.5, 0.5, 0.5))
    with pytest.raises(ValueError, match="sample_down: modes"):
        sample_down(rng, modes=("lanczos",), probs=(1.0,))
    with pytest.raises(TypeError, match="sample_noise: rng"):
        sample_noise(0, 3)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="add_gaussian_noise: params are for 2 frames"):
        add_gaussian_noise(torch.rand(3, 3, 8, 8), {"sigma": [1.0, 1.0], "gray": [True, True], "seed": 0})
    with pytest.raises(ValueError, match="apply_blur: params lack"):
        apply_blur(torch.rand(1, 3, 8, 8), {"kind": "iso"})
