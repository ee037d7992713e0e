"""Resize: the x4 downscale of the basic operators (area / bilinear / bicubic, p 0.3 / 0.3 / 0.4, per clip).

``F.interpolate`` with ``align_corners=False``. Bilinear and bicubic use ``antialias=True`` by default (a
proper low-pass for a x4 reduction, like cv2's INTER_AREA does by construction); VQD-SR's GPU path interpolated
without it, which aliases. Set ``antialias=False`` in the config to reproduce that. Nearest-neighbour (deliberate
aliasing) lives in ``analog.aliasing``.
"""

from __future__ import annotations

import numpy as np
import torch.nn.functional as F
from torch import Tensor

from . import check_clip, check_probs, check_rng

MODES = ("area", "bilinear", "bicubic", "nearest")
ANTIALIAS_MODES = ("bilinear", "bicubic")


def sample_down(
    rng: np.random.Generator,
    *,
    modes: tuple[str, ...] = ("area", "bilinear", "bicubic"),
    probs: tuple[float, ...] = (0.3, 0.3, 0.4),
    scale: int = 4,
    antialias: bool = True,
) -> dict:
    """Draw the downscale mode for a clip: {"mode", "scale", "antialias"}."""
    check_rng(rng, "sample_down")
    bad = [m for m in modes if m not in MODES]
    if bad or not modes:
        raise ValueError(f"sample_down: modes must be a non-empty subset of {MODES}, got {modes!r}")
    p = check_probs(probs, len(modes), "probs", "sample_down")
    if int(scale) != scale or scale < 1:
        raise ValueError(f"sample_down: scale must be a positive integer, got {scale!r}")
    mode = modes[int(rng.choice(len(modes), p=p))]
    return {"mode": mode, "scale": int(scale), "antialias": bool(antialias)}


def resize(clip: Tensor, size: tuple[int, int], mode: str, *, antialias: bool = True) -> Tensor:
    """Resize every frame to ``size`` = (H, W) with ``mode`` (antialias only where the mode supports it)."""
    check_clip(clip, "resize")
    if mode not in MODES:
        raise ValueError(f"resize: mode must be one of {MODES}, got {mode!r}")
    h, w = (int(s) for s in size)
    if h < 1 or w < 1:
        raise ValueError(f"resize: target size must be positive, got {size!r}")
    kw = {"align_corners": False} if mode in ANTIALIAS_MODES else {}
    if mode in ANTIALIAS_MODES:
        kw["antialias"] = antialias
    return F.interpolate(clip, size=(h, w), mode=mode, **kw).clamp(0, 1)


def apply_down(clip: Tensor, params: dict) -> Tensor:
    """Downscale by ``params["scale"]``; H and W must be multiples of the scale (mod-crop the HR first)."""
    check_clip(clip, "apply_down")
    try:
        mode, scale, antialias = params["mode"], int(params["scale"]), bool(params.get("antialias", True))
    except KeyError as e:
        raise ValueError(f"apply_down: params lack {e}; expected the dict returned by sample_down") from e
    if scale == 1:
        return clip
    h, w = clip.shape[-2:]
    if h % scale or w % scale:
        raise ValueError(f"apply_down: clip size {h}x{w} is not a multiple of the scale {scale}; mod-crop it first")
    return resize(clip, (h // scale, w // scale), mode, antialias=antialias)
