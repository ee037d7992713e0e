"""Old-media operators beyond the paper: ringing, aliasing, chroma bleed / shift, NTSC/PAL composite round trip.

Each has a ``sample_*`` drawing its parameters and an apply function; ``sample_analog`` / ``apply_analog`` run
the enabled ones in the fixed order aliasing -> ringing -> composite -> chroma bleed -> chroma shift (scan, then
over-sharpening at mastering, then the analogue transmission). ``composite`` needs VapourSynth with the
``vapoursynth-composite`` plugin, imported lazily inside that function only.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from . import check_clip, check_range, check_rng
from .blur import filter2d, gaussian_kernel
from .resize import resize

# BT.601 full-range RGB <-> YCbCr (Cb, Cr centred on 0)
_RGB2YCC = torch.tensor([[0.299, 0.587, 0.114], [-0.168736, -0.331264, 0.5], [0.5, -0.418688, -0.081312]])
_YCC2RGB = torch.linalg.inv(_RGB2YCC)
COMPOSITE_LINES = {"ntsc": 480, "pal": 576}
COMPOSITE_MATRIX = {"ntsc": "170m", "pal": "470bg"}
COMPOSITE_FITS = ("auto", "scale", "pad")


def rgb_to_ycbcr(clip: Tensor) -> Tensor:
    return torch.einsum("ij,njhw->nihw", _RGB2YCC.to(clip), clip)


def ycbcr_to_rgb(ycc: Tensor) -> Tensor:
    return torch.einsum("ij,njhw->nihw", _YCC2RGB.to(ycc), ycc)


def sinc_kernel(kernel_size: int, cutoff: float) -> Tensor:
    """Normalised circular low-pass (2-D sinc / Airy) kernel with ``cutoff`` in radians per pixel (0, pi]."""
    if kernel_size < 3 or kernel_size % 2 == 0:
        raise ValueError(f"sinc_kernel: kernel_size must be an odd integer >= 3, got {kernel_size}")
    if not 0 < cutoff <= math.pi:
        raise ValueError(f"sinc_kernel: cutoff must be in (0, pi], got {cutoff}")
    r = torch.arange(kernel_size, dtype=torch.float64) - kernel_size // 2
    rad = torch.sqrt(r[None, :] ** 2 + r[:, None] ** 2)
    safe = torch.where(rad == 0, torch.ones_like(rad), rad)
    k = cutoff * torch.special.bessel_j1(cutoff * safe) / (2 * math.pi * safe)
    k = torch.where(rad == 0, torch.full_like(k, cutoff**2 / (4 * math.pi)), k)
    return (k / k.sum()).float()


# ---- ringing -------------------------------------------------------------------------------------------------


def sample_ringing(
    rng: np.random.Generator,
    *,
    sinc_prob: float = 0.5,
    amount: tuple[float, float] = (0.5, 3.0),
    sigma: tuple[float, float] = (0.8, 2.5),
    cutoff: tuple[float, float] = (math.pi / 4, math.pi / 2),
    kernel_size: int = 15,
) -> dict:
    """Over-sharpening halo ({"kind": "sharpen", amount, sigma}) or sinc ringing ({"kind": "sinc", cutoff, size})."""
    check_rng(rng, "sample_ringing")
    if rng.random() < sinc_prob:
        lo, hi = check_range(cutoff, "cutoff", "sample_ringing", lo=1e-3, hi=math.pi)
        return {"kind": "sinc", "cutoff": float(rng.uniform(lo, hi)), "kernel_size": int(kernel_size)}
    a = rng.uniform(*check_range(amount, "amount", "sample_ringing", lo=0.0))
    s = rng.uniform(*check_range(sigma, "sigma", "sample_ringing", lo=1e-3))
    return {"kind": "sharpen", "amount": float(a), "sigma": float(s)}


def ringing(clip: Tensor, params: dict) -> Tensor:
    """Sharpen: x + amount * (x - gauss(x)) (halos on edges); sinc: ideal low-pass (ripples next to edges)."""
    check_clip(clip, "ringing")
    if params.get("kind") == "sinc":
        return filter2d(clip, sinc_kernel(int(params["kernel_size"]), float(params["cutoff"]))).clamp(0, 1)
    if params.get("kind") == "sharpen":
        s = float(params["sigma"])
        size = 2 * math.ceil(3 * s) + 1
        blurred = filter2d(clip, gaussian_kernel(size, s, s))
        return (clip + float(params["amount"]) * (clip - blurred)).clamp(0, 1)
    raise ValueError(f"ringing: params['kind'] must be 'sinc' or 'sharpen', got {params.get('kind')!r}")


# ---- aliasing ------------------------------------------------------------------------------------------------


def sample_aliasing(rng: np.random.Generator, *, factor: tuple[float, float] = (1.5, 3.0)) -> dict:
    """Point-resize aliasing: shrink by ``factor`` with nearest, enlarge back with nearest or bilinear."""
    check_rng(rng, "sample_aliasing")
    f = rng.uniform(*check_range(factor, "factor", "sample_aliasing", lo=1.0))
    return {"factor": float(f), "up_mode": "nearest" if rng.random() < 0.5 else "bilinear"}


def aliasing(clip: Tensor, params: dict) -> Tensor:
    """Nearest-neighbour shrink by params["factor"] (jaggies, broken thin lines), then back to the input size."""
    check_clip(clip, "aliasing")
    h, w = clip.shape[-2:]
    f = float(params["factor"])
    if f < 1:
        raise ValueError(f"aliasing: factor must be >= 1, got {f}")
    small = resize(clip, (max(1, round(h / f)), max(1, round(w / f))), "nearest")
    return resize(small, (h, w), params.get("up_mode", "nearest"), antialias=False)


# ---- chroma bleed / shift ------------------------------------------------------------------------------------


def sample_chroma_bleed(
    rng: np.random.Generator, *, sigma_x: tuple[float, float] = (1.0, 4.0), sigma_y: tuple[float, float] = (0.3, 1.0)
) -> dict:
    """Chroma-only blur (low chroma bandwidth), wider horizontally as on tape / composite."""
    check_rng(rng, "sample_chroma_bleed")
    sx = rng.uniform(*check_range(sigma_x, "sigma_x", "sample_chroma_bleed", lo=1e-3))
    sy = rng.uniform(*check_range(sigma_y, "sigma_y", "sample_chroma_bleed", lo=1e-3))
    return {"sigma_x": float(sx), "sigma_y": float(sy)}


def chroma_bleed(clip: Tensor, params: dict) -> Tensor:
    """Blur Cb and Cr (BT.601 YCbCr) with an axis-aligned Gaussian; luma untouched."""
    check_clip(clip, "chroma_bleed")
    sx, sy = float(params["sigma_x"]), float(params["sigma_y"])
    ycc = rgb_to_ycbcr(clip)
    size = 2 * math.ceil(3 * max(sx, sy)) + 1
    chroma = filter2d(ycc[:, 1:], gaussian_kernel(size, sx, sy))
    return ycbcr_to_rgb(torch.cat([ycc[:, :1], chroma], dim=1)).clamp(0, 1)


def sample_chroma_shift(
    rng: np.random.Generator, *, shift_x: tuple[float, float] = (-3.0, 3.0), shift_y: tuple[float, float] = (-1.0, 1.0)
) -> dict:
    """Chroma misregistration in pixels (sub-pixel), one shift for the clip."""
    check_rng(rng, "sample_chroma_shift")
    dx = rng.uniform(*check_range(shift_x, "shift_x", "sample_chroma_shift"))
    dy = rng.uniform(*check_range(shift_y, "shift_y", "sample_chroma_shift"))
    return {"dx": float(dx), "dy": float(dy)}


def chroma_shift(clip: Tensor, params: dict) -> Tensor:
    """Translate Cb and Cr by (dx, dy) px (bilinear, border replicate); luma untouched."""
    check_clip(clip, "chroma_shift")
    n, _, h, w = clip.shape
    dx, dy = float(params["dx"]), float(params["dy"])
    ycc = rgb_to_ycbcr(clip)
    ys = torch.linspace(-1, 1, h, dtype=clip.dtype) - 2 * dy / max(h - 1, 1)
    xs = torch.linspace(-1, 1, w, dtype=clip.dtype) - 2 * dx / max(w - 1, 1)
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    grid = torch.stack([gx, gy], dim=-1).expand(n, h, w, 2).to(clip.device)
    chroma = F.grid_sample(ycc[:, 1:], grid, mode="bilinear", padding_mode="border", align_corners=True)
    return ycbcr_to_rgb(torch.cat([ycc[:, :1], chroma], dim=1)).clamp(0, 1)


# ---- NTSC / PAL composite ------------------------------------------------------------------------------------


def sample_composite(
    rng: np.random.Generator,
    *,
    standards: tuple[str, ...] = ("ntsc", "pal"),
    dimensions: tuple[int, ...] = (1, 2),
    fit: str = "auto",
) -> dict:
    """Composite round trip: {"standard", "dimensions" (1 crude notch, 2 line comb, 3 3-D comb), "fit"}."""
    check_rng(rng, "sample_composite")
    if not standards or any(s not in COMPOSITE_LINES for s in standards):
        raise ValueError(f"sample_composite: standards must be a non-empty subset of {tuple(COMPOSITE_LINES)}")
    if not dimensions or any(d not in (1, 2, 3) for d in dimensions):
        raise ValueError(f"sample_composite: dimensions must be a non-empty subset of (1, 2, 3), got {dimensions!r}")
    if fit not in COMPOSITE_FITS:
        raise ValueError(f"sample_composite: fit must be one of {COMPOSITE_FITS}, got {fit!r}")
    return {
        "standard": standards[int(rng.integers(len(standards)))],
        "dimensions": int(dimensions[int(rng.integers(len(dimensions)))]),
        "fit": fit,
    }


def composite(clip: Tensor, params: dict) -> Tensor:
    """Encode to an NTSC/PAL composite signal and decode it back (dot crawl, rainbows, chroma loss).

    The composite raster needs 480 (NTSC) or 576 (PAL) lines and is 720 samples wide: ``fit="scale"`` resizes
    the clip to that raster and back (bicubic; on a small clip this shrinks the artefacts with it); ``fit="pad"``
    edge-pads a clip no larger than the raster and crops back (artefacts at SD scale); ``"auto"`` pads when the
    clip fits, else scales.
    """
    func = "analog.composite"
    check_clip(clip, func)
    std, dims, fit = params.get("standard"), int(params.get("dimensions", 2)), params.get("fit", "auto")
    if std not in COMPOSITE_LINES:
        raise ValueError(f"{func}: standard must be one of {tuple(COMPOSITE_LINES)}, got {std!r}")
    if dims not in (1, 2, 3):
        raise ValueError(f"{func}: dimensions must be 1, 2 or 3, got {dims}")
    try:
        import vapoursynth as vs
    except ImportError as e:
        raise RuntimeError(f"{func}: needs VapourSynth (pip install VapourSynth vapoursynth-composite)") from e
    core = vs.core
    if not hasattr(core, "composite"):
        raise RuntimeError(f"{func}: the VapourSynth 'composite' plugin is missing (pip install vapoursynth-composite)")
    n, _, h, w = clip.shape
    lines, width = COMPOSITE_LINES[std], 720
    if fit == "auto":
        fit = "pad" if h <= lines and w <= width else "scale"
    if fit == "scale":
        x = resize(clip.float(), (lines, width), "bicubic")
    elif fit == "pad":
        if h > lines or w > width:
            raise ValueError(f"{func}: fit='pad' needs a clip of at most {width}x{lines}, got {w}x{h}")
        top, left = (lines - h) // 2, (width - w) // 2
        x = F.pad(clip.float(), (left, width - w - left, top, lines - h - top), mode="replicate")
    else:
        raise ValueError(f"{func}: fit must be one of {COMPOSITE_FITS}, got {fit!r}")
    frames = x.clamp(0, 1).cpu().numpy()  # (N, 3, lines, 720) float32

    blank = core.std.BlankClip(format=vs.RGBS, width=width, height=lines, length=n, fpsnum=25, fpsden=1, keep=True)

    def fill(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        out = f.copy()
        for p in range(3):
            np.asarray(out[p])[:] = frames[n, p]
        return out

    src = core.std.ModifyFrame(blank, blank, fill)
    yuv = core.resize.Bicubic(src, format=vs.YUV444P16, matrix_s=COMPOSITE_MATRIX[std])
    signal = core.composite.Encode(yuv, standard=std)
    dec = core.composite.Decode(signal, standard=std, width=width, dimensions=dims)
    rgb = core.resize.Bicubic(dec, format=vs.RGBS, matrix_in_s=COMPOSITE_MATRIX[std])
    out = np.empty_like(frames)
    for i in range(n):
        f = rgb.get_frame(i)
        for p in range(3):
            out[i, p] = np.asarray(f[p])
    y = torch.from_numpy(out).clamp(0, 1)
    if fit == "scale":
        y = resize(y, (h, w), "bicubic")
    else:
        y = y[..., top : top + h, left : left + w]
    return y.to(clip).clamp(0, 1)


# ---- all of them ---------------------------------------------------------------------------------------------

ANALOG_OPS = ("aliasing", "ringing", "composite", "chroma_bleed", "chroma_shift")  # application order
_SAMPLERS = {
    "aliasing": sample_aliasing,
    "ringing": sample_ringing,
    "composite": sample_composite,
    "chroma_bleed": sample_chroma_bleed,
    "chroma_shift": sample_chroma_shift,
}
_APPLY = {
    "aliasing": aliasing,
    "ringing": ringing,
    "composite": composite,
    "chroma_bleed": chroma_bleed,
    "chroma_shift": chroma_shift,
}


def sample_analog(rng: np.random.Generator, probs: dict[str, float], options: dict[str, dict] | None = None) -> dict:
    """Draw each operator with its probability ``probs[name]``; ``options[name]`` are its sampler's keywords.

    Returns {name: params or None} for every name in ``ANALOG_OPS`` (None = not applied).
    """
    check_rng(rng, "sample_analog")
    unknown = set(probs) - set(ANALOG_OPS) | set(options or {}) - set(ANALOG_OPS)
    if unknown:
        raise ValueError(f"sample_analog: unknown operators {sorted(unknown)}; known: {ANALOG_OPS}")
    out: dict[str, dict | None] = {}
    for name in ANALOG_OPS:
        p = float(probs.get(name, 0.0))
        if not 0 <= p <= 1:
            raise ValueError(f"sample_analog: probability of {name} must be in [0, 1], got {p}")
        hit = rng.random() < p
        out[name] = _SAMPLERS[name](rng, **(options or {}).get(name, {})) if hit else None
    return out


def apply_analog(clip: Tensor, params: dict) -> Tensor:
    """Apply the operators drawn by ``sample_analog`` in ``ANALOG_OPS`` order."""
    check_clip(clip, "apply_analog")
    unknown = set(params) - set(ANALOG_OPS)
    if unknown:
        raise ValueError(f"apply_analog: unknown operators {sorted(unknown)}; known: {ANALOG_OPS}")
    for name in ANALOG_OPS:
        if params.get(name) is not None:
            clip = _APPLY[name](clip, params[name])
    return clip
