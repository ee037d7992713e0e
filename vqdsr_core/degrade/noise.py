"""Noise: additive Gaussian noise at HR, drawn independently per frame (sigma ~ U(0, 10)/255, gray with p 0.5).

The per-frame noise fields come from a ``torch.Generator`` seeded by the ``seed`` stored in the params, so
re-applying the same params gives the same noise bit for bit.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from . import check_clip, check_probs, check_range, check_rng


def sample_noise(
    rng: np.random.Generator, num_frames: int, *, sigma: tuple[float, float] = (0.0, 10.0), gray_prob: float = 0.5
) -> dict:
    """Per-frame noise parameters: {"sigma": [num_frames floats, 0..255 scale], "gray": [bools], "seed": int}."""
    check_rng(rng, "sample_noise")
    if int(num_frames) != num_frames or num_frames < 1:
        raise ValueError(f"sample_noise: num_frames must be a positive integer, got {num_frames!r}")
    lo, hi = check_range(sigma, "sigma", "sample_noise", lo=0.0, hi=255.0)
    check_probs((gray_prob, 1 - gray_prob), 2, "gray_prob", "sample_noise")
    return {
        "sigma": [float(s) for s in rng.uniform(lo, hi, int(num_frames))],
        "gray": [bool(g) for g in rng.random(int(num_frames)) < gray_prob],
        "seed": int(rng.integers(0, 2**31 - 1)),
    }


def add_gaussian_noise(clip: Tensor, params: dict) -> Tensor:
    """Add per-frame Gaussian noise (sigma/255; one field for all channels when gray) and clip to [0, 1]."""
    check_clip(clip, "add_gaussian_noise")
    try:
        sigma, gray, seed = params["sigma"], params["gray"], int(params["seed"])
    except KeyError as e:
        raise ValueError(f"add_gaussian_noise: params lack {e}; expected the dict returned by sample_noise") from e
    n, c, h, w = clip.shape
    if len(sigma) != n or len(gray) != n:
        raise ValueError(f"add_gaussian_noise: params are for {len(sigma)} frames but the clip has {n}")
    gen = torch.Generator().manual_seed(seed)
    out = torch.empty_like(clip)
    for t in range(n):  # gray: one (1, H, W) field for all channels; colour: (3, H, W)
        field = torch.randn(1 if gray[t] else c, h, w, generator=gen)
        out[t] = clip[t] + (field * (float(sigma[t]) / 255.0)).to(clip)
    return out.clamp_(0, 1)
