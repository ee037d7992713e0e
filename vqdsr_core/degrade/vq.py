"""VQ degradation (VQD-SR): reconstruct the LR clip through a trained multi-scale VQGAN with k-th-nearest codes.

Per clip and branch: k_top = 1, k_mid ~ U{1..10}, k_bottom from three levels U{1..15} / U{16..30} / U{31..50}
with p 0.3 / 0.4 / 0.3. Larger k = codes further from the encoder's latent = stronger, "real-LQ"-like
degradation. The output is clamped and quantised to 8 bit by rounding (the reference truncates).
"""

from __future__ import annotations

import numpy as np
from torch import Tensor, nn

from . import check_clip, check_probs, check_range, check_rng, quantize8


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
) -> dict:
    """Draw {"k_top", "k_mid", "k_bottom"} for one clip (inclusive integer ranges)."""
    check_rng(rng, "sample_vq")
    p = check_probs(k_bottom_probs, len(k_bottom_levels), "k_bottom_probs", "sample_vq")
    top = _draw_int(rng, k_top, "k_top")
    mid = _draw_int(rng, k_mid, "k_mid")
    level = int(rng.choice(len(k_bottom_levels), p=p))
    bottom = _draw_int(rng, k_bottom_levels[level], f"k_bottom_levels[{level}]")
    return {"k_top": top, "k_mid": mid, "k_bottom": bottom}


def vq_degrade(clip: Tensor, vqgan: nn.Module, params: dict, *, batch_size: int | None = 8) -> Tensor:
    """Run ``vqgan.degrade`` on the clip's frames with the drawn k's; result rounded to the 8-bit grid."""
    check_clip(clip, "vq_degrade")
    if not hasattr(vqgan, "degrade"):
        raise TypeError(f"vq_degrade: vqgan must be a MultiScaleVQGAN (has .degrade), got {type(vqgan).__name__}")
    try:
        k = int(params["k_top"]), int(params["k_mid"]), int(params["k_bottom"])
    except KeyError as e:
        raise ValueError(f"vq_degrade: params lack {e}; expected the dict returned by sample_vq") from e
    if vqgan.training and any(isinstance(m, nn.Dropout) and m.p > 0 for m in vqgan.modules()):
        raise ValueError("vq_degrade: call vqgan.eval() first (active dropout would make the degradation random)")
    out = vqgan.degrade(clip, k_top=k[0], k_mid=k[1], k_bottom=k[2], batch_size=batch_size)
    return quantize8(out)
