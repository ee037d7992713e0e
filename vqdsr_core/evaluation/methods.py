"""The upscalers compared by ``vqdsr eval``: bicubic, the realesr-animevideov3 peer, and vsvqdsr as users run it.

A method maps an LR clip (N, 3, h, w) float on the 8-bit grid to an x4 clip (N, 3, 4h, 4w) float in [0, 1], also
rounded to the 8-bit grid (what a user gets in a PNG or an 8-bit encode; the VapourSynth path returns RGB24).
``run_timed`` returns the output and the seconds spent per frame (model loading and a first warm-up frame
excluded).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

log = logging.getLogger(__name__)

SCALE = 4


def to_8bit(x: Tensor) -> Tensor:
    """Round a [0, 1] float tensor to the 8-bit grid (k / 255)."""
    return x.clamp(0, 1).mul(255).round().div(255)


def bicubic_x4(lr: Tensor) -> Tensor:
    """x4 bicubic (``F.interpolate``, align_corners=False, no antialias), clamped and rounded to 8 bits."""
    return to_8bit(F.interpolate(lr.float(), scale_factor=SCALE, mode="bicubic", align_corners=False))


@dataclass
class Method:
    """One table row: ``kind`` is "bicubic", "peer", "vsvqdsr" or "hr" (the sanity row: the HR clip itself)."""

    name: str
    kind: str
    weights: Path | None = None
    device: str = "auto"
    precision: str = "auto"
    _model: object = field(default=None, repr=False)
    _warm: bool = field(default=False, repr=False)

    def __post_init__(self) -> None:
        if self.kind not in ("bicubic", "peer", "vsvqdsr", "hr"):
            raise ValueError(f"Method: unknown kind {self.kind!r} for {self.name!r}")
        if self.kind == "vsvqdsr" and self.weights is None:
            raise ValueError(f"Method: vsvqdsr row {self.name!r} needs a weight file")

    def run_timed(self, lr: Tensor, hr: Tensor | None = None) -> tuple[Tensor, float]:
        """Upscale ``lr`` -> (SR clip, seconds per frame). ``hr`` is only used by the "hr" sanity row."""
        n = lr.shape[0]
        if self.kind == "hr":
            if hr is None:
                raise ValueError("Method.run_timed: the hr sanity row needs the HR clip")
            return hr.clone(), 0.0
        if self.kind == "peer" and self._model is None:
            self._model = _load_peer(self.device, self.precision)
        if not self._warm and self.kind in ("peer", "vsvqdsr"):  # one untimed frame: kernel selection, caches
            self._warm = True
            self.run_timed(lr[:1])
        t0 = time.perf_counter()
        if self.kind == "bicubic":
            sr = bicubic_x4(lr)
        elif self.kind == "peer":
            from ..importers.ncnn import upscale_frames

            sr = to_8bit(upscale_frames(self._model, lr, pad=10))
        else:
            sr, t0 = vsvqdsr_x4(lr, self.weights, device=self.device, precision=self.precision)
        return sr, (time.perf_counter() - t0) / n


def _load_peer(device: str, precision: str) -> torch.nn.Module:
    from ..device import pick_device, pick_dtype
    from ..importers.ncnn import load_animevideov3

    dev = pick_device(device, func="vqdsr eval")
    return load_animevideov3(device=dev, dtype=pick_dtype(precision, dev, func="vqdsr eval"))


def vsvqdsr_x4(lr: Tensor, weights: Path, *, device: str = "auto", precision: str = "auto") -> tuple[Tensor, float]:
    """Run ``vsvqdsr.upscale`` with its default settings on the LR clip fed to VapourSynth as RGB24 frames.

    The clip is built in-process (``BlankClip`` + ``ModifyFrame`` copying the 8-bit frames, lossless) and the
    RGB24 output is read back through ``VideoNode.frames()`` (parallel requests, as vspipe makes them).
    Returns (SR clip, perf_counter after the filter graph was built: the model load is not timed).
    """
    import vapoursynth as vs

    import vsvqdsr
    from vsvqdsr.frames import clip_from_array

    frames = lr.clamp(0, 1).mul(255).round().to(torch.uint8).numpy()  # (N, 3, h, w)
    num = frames.shape[0]
    src = clip_from_array(frames, vs.RGB24, fpsnum=24000, fpsden=1001)
    try:
        out = vsvqdsr.upscale(src, weights=str(weights), device=device, precision=precision)
        t0 = time.perf_counter()
        sr = np.empty((num, 3, out.height, out.width), np.uint8)
        for i, f in enumerate(out.frames()):
            for p in range(3):
                sr[i, p] = np.asarray(f[p])
    except vs.Error as e:  # surface as a plain error for the CLI
        raise RuntimeError(f"vsvqdsr_x4: {e}") from e
    return torch.from_numpy(sr).float().div(255), t0
