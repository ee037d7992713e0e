"""Degradation engine: small seeded operators on clips, composed into LR/HR training pairs.

A clip is a float tensor (N, 3, H, W) in [0, 1] (the N frames of one clip). Every operator comes as a pair:
``sample_*(rng, ...) -> dict`` draws its parameters from a ``numpy.random.Generator`` (plain JSON types), and an
apply function takes the clip and that dict, so a pipeline can return exactly what it drew and re-apply it.

Modules: ``blur``, ``noise``, ``resize``, ``codec`` (PyAV H.264 / MPEG-2 / MPEG-4), ``analog`` (ringing, aliasing,
chroma bleed/shift, NTSC/PAL composite via VapourSynth), ``vq`` (k-th-nearest VQGAN degradation) and ``pipeline``
(``DegradationConfig``, ``sample_params``, ``degrade_clip``, ``make_pair``).
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor


def check_clip(clip: object, func: str, *, min_size: int = 1) -> Tensor:
    """Validate a clip: float tensor (N, 3, H, W), values in [0, 1], H, W >= ``min_size``; returns it."""
    if not isinstance(clip, Tensor):
        raise TypeError(f"{func}: expected a torch.Tensor clip (N, 3, H, W), got {type(clip).__name__}")
    if clip.ndim != 4 or clip.shape[1] != 3:
        raise ValueError(f"{func}: expected a clip of shape (N, 3, H, W), got {tuple(clip.shape)}")
    if not clip.is_floating_point():
        raise ValueError(f"{func}: expected a float clip in [0, 1], got dtype {clip.dtype}")
    if clip.shape[0] < 1 or min(clip.shape[-2:]) < min_size:
        raise ValueError(f"{func}: clip {tuple(clip.shape)} is too small (need N >= 1 and H, W >= {min_size})")
    if clip.numel():
        lo, hi = (v.item() for v in torch.aminmax(clip.detach()))  # one pass; NaN propagates and fails below
        if not (lo >= -1e-6 and hi <= 1 + 1e-6):
            raise ValueError(f"{func}: clip values must be finite and in [0, 1], got [{lo:.4g}, {hi:.4g}]")
    return clip


def check_rng(rng: object, func: str) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"{func}: rng must be a numpy.random.Generator (np.random.default_rng(seed)), got {rng!r}")
    return rng


def check_range(value: object, name: str, func: str, *, lo: float = float("-inf"), hi: float = float("inf")) -> tuple:
    """A (low, high) pair with lo <= low <= high <= hi, returned as a tuple."""
    try:
        a, b = value  # type: ignore[misc]
        a, b = float(a), float(b)
    except (TypeError, ValueError) as e:
        raise ValueError(f"{func}: {name} must be a (low, high) pair, got {value!r}") from e
    if not (lo <= a <= b <= hi):
        raise ValueError(f"{func}: {name} must satisfy {lo} <= low <= high <= {hi}, got {value!r}")
    return a, b


def check_probs(probs: object, n: int, name: str, func: str) -> tuple[float, ...]:
    """``n`` non-negative probabilities summing to 1 (within 1e-6)."""
    try:
        p = tuple(float(x) for x in probs)  # type: ignore[union-attr]
    except (TypeError, ValueError) as e:
        raise ValueError(f"{func}: {name} must be a sequence of {n} probabilities, got {probs!r}") from e
    if len(p) != n or any(x < 0 for x in p) or abs(sum(p) - 1) > 1e-6:
        raise ValueError(f"{func}: {name} must be {n} non-negative probabilities summing to 1, got {probs!r}")
    return p


def quantize8(clip: Tensor) -> Tensor:
    """Clamp to [0, 1] and round to the 8-bit grid (rounding, not truncation)."""
    return clip.clamp(0, 1).mul(255).round().div(255)
