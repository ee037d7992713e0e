"""Is a trained VQGAN a usable degrader? Reconstruction quality, codebook use and a picture of its degradations.

A VQD-SR degrader is only as good as its codebook: the k-th nearest code (k up to 50 in the bottom branch) must be
a trained code near the latent, not one of the untouched initial vectors. ``check_vqgan`` reports, on frames the
model was not trained on: PSNR-Y and RGB PSNR of the plain (k = 1) reconstruction, PSNR-Y after the typical
degradation draws, and per branch the perplexity and the number of distinct codes picked.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..degrade.vq import check_keep_colour, degrade_keep_colour, keep_low_frequencies
from ..metrics import psnr_rgb, psnr_y
from ..models.quantize import code_usage, nearest_indices
from ..models.vqgan import DOWN

# (k_top, k_mid, k_bottom) shown and scored besides k = 1: a mild, a middle and the strongest draw of the VQD-SR
# ranges (k_mid in [1, 10], k_bottom in [1, 50])
DRAWS = ((1, 2, 10), (1, 5, 25), (1, 10, 50))


def _draws(model: nn.Module) -> list[dict[str, int]]:
    n = model.n_embed  # a small test codebook caps k
    if model.multiscale:
        return [{"k_top": min(t, n), "k_mid": min(m, n), "k_bottom": min(b, n)} for t, m, b in DRAWS]
    return [{"k_top": min(m, n)} for _, m, _ in DRAWS]  # a top-only model: the middle branch's k on its only one


def crop8(x: Tensor) -> Tensor:
    """(..., H, W) cropped at the bottom/right to multiples of 8 (the VQGAN's total stride)."""
    h, w = (s // DOWN * DOWN for s in x.shape[-2:])
    return x[..., :h, :w]


@torch.no_grad()
def check_vqgan(model: nn.Module, images: Sequence[Tensor], keep_colour: float = 0.0, colour_lock: bool = True) -> dict:
    """Scores over ``images`` ((3, H, W) in [0, 1], at least 8x8): see the module docstring.

    ``keep_colour`` (px) is applied to the degradation draws as ``vq_degrade`` applies it; k=1 is scored both raw
    and, when ``keep_colour`` > 0, with it. ``colour_lock``: draw with the model's colour lock when it has one.
    Besides PSNR-Y, each draw gets the RGB PSNR of its 8x8 block means against the input's ("area colour": how far
    the draw moves colours rather than adding artefacts).
    """
    keep_colour = check_keep_colour(keep_colour, "check_vqgan")
    if not images:
        raise ValueError("check_vqgan: no images")
    model = model.eval()
    dev = next(model.parameters()).device
    rec, rec_rgb, rec_kept, deg = [], [], [], [[] for _ in _draws(model)]
    area = [[] for _ in _draws(model)]
    picked: dict[str, list[Tensor]] = {b: [] for b in model.branches}
    for img in images:
        x = crop8(img[None].to(dev, torch.float32))
        if min(x.shape[-2:]) < DOWN:
            raise ValueError(f"check_vqgan: images must be at least {DOWN}x{DOWN}, got {tuple(img.shape)}")
        out, _, _ = model(x * 2 - 1)
        out = (out.float().clamp(-1, 1) + 1) / 2
        rec.append(psnr_y(out, x, crop=0))
        rec_rgb.append(psnr_rgb(out, x))
        if keep_colour:
            rec_kept.append(psnr_y(keep_low_frequencies(out, x, keep_colour), x, crop=0))
        for scores, area_scores, kw in zip(deg, area, _draws(model), strict=True):
            y = _degrade(model, x, kw, keep_colour, colour_lock)
            scores.append(psnr_y(y, x, crop=0))
            area_scores.append(psnr_rgb(F.avg_pool2d(y, DOWN), F.avg_pool2d(x, DOWN)))
        z = model.encode(x * 2 - 1)
        for b in model.branches:
            flat = z[b].permute(0, 2, 3, 1).reshape(-1, z[b].shape[1])
            picked[b].append(nearest_indices(flat, model.quantize.embedding.weight))
    branches = {}
    for b, idx in picked.items():
        perplexity, usage = code_usage(torch.cat(idx), model.n_embed)
        branches[b] = {"perplexity": float(perplexity), "codes_used": round(float(usage) * model.n_embed)}
    return {
        "images": len(images),
        "n_embed": model.n_embed,
        "psnr_y_k1": float(np.mean(rec)),
        "psnr_rgb_k1": float(np.mean(rec_rgb)),
        **({"keep_colour": keep_colour, "psnr_y_k1_keep_colour": float(np.mean(rec_kept))} if keep_colour else {}),
        "psnr_y_degraded": {_name(kw): float(np.mean(s)) for kw, s in zip(_draws(model), deg)},
        "psnr_rgb_area_degraded": {_name(kw): float(np.mean(s)) for kw, s in zip(_draws(model), area)},
        "colour_lock": bool(colour_lock and getattr(model, "colour_lock", False)),
        "branches": branches,
    }


def _degrade(model: nn.Module, x: Tensor, kw: dict[str, int], keep_colour: float, colour_lock: bool = True) -> Tensor:
    k = tuple(kw.get(name, 1) for name in ("k_top", "k_mid", "k_bottom"))  # a top-only model has k_top alone
    return degrade_keep_colour(model, x, k, keep_colour, colour_lock=colour_lock).float()


def _name(kw: dict[str, int]) -> str:
    return ",".join(f"{k[2:]}={v}" for k, v in kw.items())


@torch.no_grad()
def sample_strip(
    model: nn.Module, images: Sequence[Tensor], size: int = 160, keep_colour: float = 0.0, colour_lock: bool = True
) -> np.ndarray:
    """Rows of centre crops, (H, W, 3) uint8: input | k = 1 reconstruction | each of ``DRAWS`` (``keep_colour``,
    ``colour_lock``)."""
    dev = next(model.parameters()).device
    rows = []
    for img in images:
        h, w = img.shape[-2:]
        s = min(size, h, w) // DOWN * DOWN
        top, left = (h - s) // 2, (w - s) // 2
        x = img[None, :, top : top + s, left : left + s].to(dev, torch.float32)
        out, _, _ = model(x * 2 - 1)
        draws = [_degrade(model, x, kw, keep_colour, colour_lock) for kw in _draws(model)]
        parts = [x, (out.float().clamp(-1, 1) + 1) / 2, *draws]
        rows.append(torch.cat(parts, dim=-1)[0])
    strip = torch.cat(rows, dim=-2) if len({r.shape for r in rows}) == 1 else rows[0]
    return strip.clamp(0, 1).mul(255).round().byte().permute(1, 2, 0).cpu().numpy()


def pick_images(root: Path, count: int) -> list[Path]:
    """Up to ``count`` image files under ``root``, evenly spaced over the sorted list of all of them."""
    from ..data.clips import list_frame_folders, list_frames

    files = [f for d in list_frame_folders(root) for f in list_frames(d)] if Path(root).is_dir() else []
    if not files:
        raise FileNotFoundError(f"no images under {str(root)!r}")
    keep = np.linspace(0, len(files) - 1, min(count, len(files))).round().astype(int)
    return [files[i] for i in sorted(set(keep.tolist()))]
