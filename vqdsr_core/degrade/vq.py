"""VQ degradation (VQD-SR): reconstruct the LR clip through a trained multi-scale VQGAN with k-th-nearest codes.

Per clip and branch: k_top = 1, k_mid ~ U{1..10}, k_bottom from three levels U{1..15} / U{16..30} / U{31..50}
with p 0.3 / 0.4 / 0.3. Larger k = codes further from the encoder's latent = stronger, "real-LQ"-like
degradation. The output is clamped and quantised to 8 bit by rounding (the reference truncates).

``keep_colour`` (sigma in px, 0 = off, the paper's raw reconstruction) keeps the input's Gaussian low-pass --
its colours and shading -- and takes only the finer detail from the VQGAN: an under-trained degrader (such as the
CPU-scale bundled one) pulls hues towards its corpus mean, which a VSR model trained on its output would learn to
undo on real footage.
"""

from __future__ import annotations

import math

import numpy as np
from torch import Tensor, nn

from . import check_clip, check_probs, check_range, check_rng, quantize8
from .blur import filter2d, gaussian_kernel


def _draw_int(rng: np.random.Generator, rng_range: object, name: str) -> int:
    lo, hi = check_range(rng_range, name, "sample_vq", lo=1)
    if lo != int(lo) or hi != int(hi):
        raise ValueError(f"sample_vq: {name} bounds must be integers, got {rng_range!r}")
    return int(rng.integers(int(lo), int(hi) + 1))


def sample_vq(
    rng: np.random.Generator,
    *,
    k_top: tuple[int, int] = (1, 1),
    k_mid: tuple[int, int] = (1, 10),
    k_bottom_levels: tuple[tuple[int, int], ...] = ((1, 15), (16, 30), (31, 50)),
    k_bottom_probs: tuple[float, ...] = (0.3, 0.4, 0.3),
    keep_colour: float = 0.0,
) -> dict:
    """Draw {"k_top", "k_mid", "k_bottom"} for one clip (inclusive integer ranges), plus the fixed "keep_colour"."""
    check_rng(rng, "sample_vq")
    keep_colour = check_keep_colour(keep_colour, "sample_vq")
    p = check_probs(k_bottom_probs, len(k_bottom_levels), "k_bottom_probs", "sample_vq")
    top = _draw_int(rng, k_top, "k_top")
    mid = _draw_int(rng, k_mid, "k_mid")
    level = int(rng.choice(len(k_bottom_levels), p=p))
    bottom = _draw_int(rng, k_bottom_levels[level], f"k_bottom_levels[{level}]")
    return {"k_top": top, "k_mid": mid, "k_bottom": bottom, "keep_colour": keep_colour}


def check_keep_colour(sigma: object, func: str) -> float:
    """``sigma`` as a float in [0, 16]; a clear error naming ``func`` otherwise."""
    if isinstance(sigma, bool) or not isinstance(sigma, int | float) or not 0 <= sigma <= 16:
        raise ValueError(f"{func}: keep_colour must be a number of px in [0, 16] (0 = off), got {sigma!r}")
    return float(sigma)


def keep_low_frequencies(out: Tensor, src: Tensor, sigma: float) -> Tensor:
    """(N, 3, H, W) ``out`` with its Gaussian low-pass (``sigma`` px) replaced by ``src``'s, clamped to [0, 1]."""
    if sigma <= 0:
        return out
    kernel = gaussian_kernel(2 * math.ceil(3 * sigma) + 1, sigma, sigma)
    return (out - filter2d(out, kernel) + filter2d(src.to(out.dtype), kernel)).clamp_(0, 1)


def degrade_keep_colour(
    vqgan: nn.Module,
    x: Tensor,
    k: tuple[int, int, int],
    keep_colour: float = 0.0,
    batch_size: int | None = None,
    *,
    colour_lock: bool = True,
) -> Tensor:
    """``vqgan.degrade`` of (N, 3, H, W) ``x`` in [0, 1] with the k-th nearest codes ``k`` = (top, mid, bottom) and
    the input's low-pass (``keep_colour`` px) kept; float in [0, 1], not quantised. The one VQ step of the
    training pipeline, ``vsvqdsr.degrade``, ``vqdsr degrade`` and ``check-vqgan``. ``colour_lock``: the model's
    colour lock on the draws, when it has one (``MultiScaleVQGAN.fit_colour_lock``)."""
    out = vqgan.degrade(x, k_top=k[0], k_mid=k[1], k_bottom=k[2], batch_size=batch_size, colour_lock=colour_lock)
    return keep_low_frequencies(out, x, keep_colour)


def vq_degrade(clip: Tensor, vqgan: nn.Module, params: dict, *, batch_size: int | None = 8) -> Tensor:
    """Run ``vqgan.degrade`` on the clip's frames with the drawn k's (and ``keep_colour``); rounded to 8 bit."""
    check_clip(clip, "vq_degrade")
    if not hasattr(vqgan, "degrade"):
        raise TypeError(f"vq_degrade: vqgan must be a MultiScaleVQGAN (has .degrade), got {type(vqgan).__name__}")
    try:
        k = int(params["k_top"]), int(params["k_mid"]), int(params["k_bottom"])
    except KeyError as e:
        raise ValueError(f"vq_degrade: params lack {e}; expected the dict returned by sample_vq") from e
    if vqgan.training and any(isinstance(m, nn.Dropout) and m.p > 0 for m in vqgan.modules()):
        raise ValueError("vq_degrade: call vqgan.eval() first (active dropout would make the degradation random)")
    sigma = check_keep_colour(params.get("keep_colour", 0.0), "vq_degrade")
    return quantize8(degrade_keep_colour(vqgan, clip, k, sigma, batch_size))
