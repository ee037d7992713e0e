"""Blur: isotropic / anisotropic Gaussian kernels (AnimeSR / VQD-SR "basic operators"), one kernel per clip.

Defaults follow the reference: 21x21 normalised kernel; iso (p 0.7) sigma ~ U(0.2, 4); aniso (p 0.3)
sigma_x ~ U(0.2, 4), sigma_y ~ U(0.8, 3), theta ~ U(-pi, pi); reflect padding.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import check_clip, check_probs, check_range, check_rng


def sample_blur(
    rng: np.random.Generator,
    *,
    kernel_size: int = 21,
    iso_prob: float = 0.7,
    iso_sigma: tuple[float, float] = (0.2, 4.0),
    aniso_sigma_x: tuple[float, float] = (0.2, 4.0),
    aniso_sigma_y: tuple[float, float] = (0.8, 3.0),
) -> dict:
    """Draw one blur kernel's parameters: {"kind", "sigma_x", "sigma_y", "theta", "kernel_size"}."""
    check_rng(rng, "sample_blur")
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"sample_blur: kernel_size must be a positive odd integer, got {kernel_size}")
    check_probs((iso_prob, 1 - iso_prob), 2, "iso_prob", "sample_blur")
    if rng.random() < iso_prob:
        s = rng.uniform(*check_range(iso_sigma, "iso_sigma", "sample_blur", lo=1e-3))
        return {"kind": "iso", "sigma_x": float(s), "sigma_y": float(s), "theta": 0.0, "kernel_size": kernel_size}
    sx = rng.uniform(*check_range(aniso_sigma_x, "aniso_sigma_x", "sample_blur", lo=1e-3))
    sy = rng.uniform(*check_range(aniso_sigma_y, "aniso_sigma_y", "sample_blur", lo=1e-3))
    theta = rng.uniform(-math.pi, math.pi)
    return {
        "kind": "aniso",
        "sigma_x": float(sx),
        "sigma_y": float(sy),
        "theta": float(theta),
        "kernel_size": kernel_size,
    }


def gaussian_kernel(kernel_size: int, sigma_x: float, sigma_y: float, theta: float = 0.0) -> Tensor:
    """Normalised (kernel_size, kernel_size) Gaussian with covariance R(theta) diag(sx^2, sy^2) R(theta)^T."""
    if kernel_size < 1 or kernel_size % 2 == 0:
        raise ValueError(f"gaussian_kernel: kernel_size must be a positive odd integer, got {kernel_size}")
    if not (sigma_x > 0 and sigma_y > 0):
        raise ValueError(f"gaussian_kernel: sigmas must be > 0, got ({sigma_x}, {sigma_y})")
    c, s = math.cos(theta), math.sin(theta)
    rot = torch.tensor([[c, -s], [s, c]], dtype=torch.float64)
    cov = rot @ torch.diag(torch.tensor([sigma_x**2, sigma_y**2], dtype=torch.float64)) @ rot.T
    r = torch.arange(kernel_size, dtype=torch.float64) - kernel_size // 2
    grid = torch.stack(torch.meshgrid(r, r, indexing="xy"), dim=-1)  # (k, k, 2) as (x, y)
    k = torch.exp(-0.5 * torch.einsum("ija,ab,ijb->ij", grid, torch.linalg.inv(cov), grid))
    return (k / k.sum()).float()


def filter2d(clip: Tensor, kernel: Tensor) -> Tensor:
    """Filter every channel of (N, C, H, W) with one (k, k) kernel (correlation, as cv2.filter2D); reflect padding.

    Replicate padding when the frame is too small to reflect. Computed as an FFT product over the padded
    frame: on CPU this is 4-8x faster than a 21x21 depthwise conv2d. The circular wrap only touches the first
    2*pad rows/columns, which are cropped off.
    """
    k = kernel.shape[-1]
    if kernel.ndim != 2 or kernel.shape[0] != k or k % 2 == 0:
        raise ValueError(f"filter2d: kernel must be square with an odd size, got {tuple(kernel.shape)}")
    pad = k // 2
    n, ch, h, w = clip.shape
    mode = "reflect" if min(h, w) > pad else "replicate"
    x = F.pad(clip.reshape(n * ch, 1, h, w), (pad, pad, pad, pad), mode=mode)  # (N*C, 1, H+2p, W+2p)
    size = (_fast_len(x.shape[-2]), _fast_len(x.shape[-1]))  # zero-padded further: only the output's tail moves
    spec = torch.fft.rfft2(x.float(), s=size) * torch.fft.rfft2(kernel.flip(0, 1).float().to(x.device), s=size)
    out = torch.fft.irfft2(spec, s=size)[..., 2 * pad : 2 * pad + h, 2 * pad : 2 * pad + w]  # (N*C, 1, H, W)
    return out.reshape(n, ch, h, w).to(clip.dtype)


def _fast_len(n: int) -> int:
    """Smallest m >= n whose only prime factors are 2, 3 and 5 (fast FFT sizes)."""
    m = n
    while True:
        r = m
        for f in (2, 3, 5):
            while r % f == 0:
                r //= f
        if r == 1:
            return m
        m += 1


def apply_blur(clip: Tensor, params: dict) -> Tensor:
    """Blur every frame of the clip with the kernel described by ``params`` (from ``sample_blur``)."""
    check_clip(clip, "apply_blur")
    try:
        kernel = gaussian_kernel(int(params["kernel_size"]), params["sigma_x"], params["sigma_y"], params["theta"])
    except KeyError as e:
        raise ValueError(f"apply_blur: params lack {e}; expected the dict returned by sample_blur") from e
    return filter2d(clip, kernel).clamp(0, 1)
