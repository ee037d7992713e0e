"""Shared test fixtures: small synthetic cartoon frames (flat colours, dark outlines) made with numpy only."""

from __future__ import annotations

import numpy as np
import pytest
import torch


def cartoon_frames(n: int = 1, h: int = 64, w: int = 64, *, seed: int = 0, motion: int = 2) -> np.ndarray:
    """(n, h, w, 3) uint8 frames: flat background, a few outlined flat-colour ellipses drifting by ``motion`` px."""
    rng = np.random.default_rng(seed)
    bg = rng.integers(120, 255, 3)
    shapes = [
        (
            rng.uniform(0.2, 0.8) * w,
            rng.uniform(0.2, 0.8) * h,
            rng.uniform(0.1, 0.3) * w,
            rng.uniform(0.1, 0.3) * h,
            rng.integers(0, 255, 3),
            rng.uniform(-1, 1, 2),
        )
        for _ in range(4)
    ]
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    out = np.empty((n, h, w, 3), np.uint8)
    for t in range(n):
        img = np.broadcast_to(bg, (h, w, 3)).copy()
        for cx, cy, rx, ry, col, vel in shapes:
            d = ((xx - cx - vel[0] * motion * t) / rx) ** 2 + ((yy - cy - vel[1] * motion * t) / ry) ** 2
            img[d <= 1.0] = col
            img[(d > 0.80) & (d <= 1.0)] = (20, 20, 30)  # outline
        out[t] = img
    return out


@pytest.fixture
def cartoon():
    """Factory fixture: ``cartoon(n, h, w, seed=...)`` -> (n, h, w, 3) uint8."""
    return cartoon_frames


@pytest.fixture
def cartoon_tensor():
    """Factory fixture: ``cartoon_tensor(n, h, w, seed=...)`` -> (n, 3, h, w) float32 in [0, 1]."""

    def make(n: int = 1, h: int = 64, w: int = 64, *, seed: int = 0, motion: int = 2) -> torch.Tensor:
        return torch.from_numpy(cartoon_frames(n, h, w, seed=seed, motion=motion)).permute(0, 3, 1, 2).float() / 255

    return make
