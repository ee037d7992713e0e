"""Quality evaluation (``vqdsr eval``, ``python -m bench.quality``): vsvqdsr vs bicubic and realesr-animevideov3.

``tracks`` defines the two fixed LR tracks (web, old media), ``methods`` the upscalers (vsvqdsr through its
VapourSynth filter), ``run`` the loop, metrics and CLI, ``report`` the QUALITY.md / crops writer.
"""

from __future__ import annotations

from .run import add_arguments, aggregate, clip_metrics, evaluate, load_clips, lpips_boxes, run_from_args
from .tracks import TRACKS, make_lr, track_params

__all__ = [
    "TRACKS",
    "add_arguments",
    "aggregate",
    "clip_metrics",
    "evaluate",
    "load_clips",
    "lpips_boxes",
    "make_lr",
    "run_from_args",
    "track_params",
]
