"""The two fixed degradation tracks of the quality evaluation, built from the ``vqdsr_core.degrade`` operators.

Every parameter is fixed (no random draw), so the LR clips are the same on every run:

- ``web``: area x4 downscale, then one H.264 generation (libx264 CRF 30, high profile, preset medium, yuv420p
  4:2:0 with the BT.709 matrix and a BT.709-tagged stream: what HD web video users feed in).
- ``old``: isotropic Gaussian blur (sigma 2.0 HR px, 21x21) at HR, area x4 downscale, an NTSC composite round trip
  at SD scale (2-line comb decoder: dot crawl, rainbows), then one MPEG-2 generation at fixed quantiser 10
  (B-frames, a low-bitrate DVD/broadcast look).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch and the degraders load on first use: ``vqdsr --help`` reads TRACKS
    from torch import Tensor

SCALE = 4

# track name -> the degrade_clip params minus "version" / "num_frames" (filled per clip)
TRACKS: dict[str, dict] = {
    "web": {
        "description": "area x4 down + H.264 (libx264 CRF 30, high profile, preset medium, yuv420p BT.709)",
        "blur": None,
        "noise": None,
        "down": {"mode": "area", "scale": SCALE, "antialias": True},
        "analog": None,
        "vq": None,
        "codec": {
            "generations": [{"codec": "h264", "crf": 30.0, "profile": "high", "matrix": "bt709"}],
            "preset": "medium",
        },
        "contrast": None,
    },
    "old": {
        "description": "Gaussian blur sigma 2 (HR) + area x4 down + NTSC composite (2-line comb) + MPEG-2 qscale 10",
        "blur": {"kind": "iso", "sigma_x": 2.0, "sigma_y": 2.0, "theta": 0.0, "kernel_size": 21},
        "noise": None,
        "down": {"mode": "area", "scale": SCALE, "antialias": True},
        "analog": {"composite": {"standard": "ntsc", "dimensions": 2, "fit": "auto"}},
        "vq": None,
        "codec": {"generations": [{"codec": "mpeg2", "qscale": 10}], "preset": "medium"},
        "contrast": None,
    },
}


def parse_tracks(text: str) -> list[str]:
    """``"web,old"`` -> ["web", "old"]; ValueError naming the unknown ones."""
    names = [t.strip() for t in text.split(",") if t.strip()]
    bad = [t for t in names if t not in TRACKS]
    if not names or bad:
        raise ValueError(f"parse_tracks: tracks must be a comma list of {sorted(TRACKS)}, got {text!r}")
    return list(dict.fromkeys(names))


def track_params(track: str, num_frames: int) -> dict:
    """The ``degrade_clip`` params of ``track`` for a clip of ``num_frames`` frames."""
    from ..degrade.pipeline import PARAMS_VERSION

    if track not in TRACKS:
        raise ValueError(f"track_params: unknown track {track!r}; known: {sorted(TRACKS)}")
    params = {k: copy.deepcopy(v) for k, v in TRACKS[track].items() if k != "description"}
    return {"version": PARAMS_VERSION, "num_frames": int(num_frames), **params}


def make_lr(hr: Tensor, track: str) -> tuple[Tensor, Tensor]:
    """HR clip (N, 3, H, W) in [0, 1] -> (LR on the 8-bit grid, HR mod-cropped to a multiple of 4)."""
    import torch

    from ..degrade.pipeline import degrade_clip, mod_crop

    hr = mod_crop(hr, SCALE)
    if min(hr.shape[-2:]) < SCALE * 4:
        raise ValueError(f"make_lr: HR frames {tuple(hr.shape[-2:])} are too small for a x{SCALE} track")
    with torch.no_grad():
        lr = degrade_clip(hr, track_params(track, hr.shape[0]))
    return lr, hr
