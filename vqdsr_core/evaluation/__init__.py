"""Quality evaluation (``vqdsr eval``, ``python -m bench.quality``): vsvqdsr vs bicubic and realesr-animevideov3.

``tracks`` defines the two fixed LR tracks (web, old media), ``methods`` the upscalers (vsvqdsr through its
VapourSynth filter), ``run`` the loop and metrics, ``options`` the command-line options, ``report`` the QUALITY.md /
crops writer. Submodules load lazily (``options`` and ``tracks`` import no torch, so ``vqdsr --help`` stays fast).
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "TRACKS": "tracks",
    "add_arguments": "options",
    "aggregate": "run",
    "clip_metrics": "run",
    "evaluate": "run",
    "load_clips": "run",
    "lpips_boxes": "run",
    "make_lr": "tracks",
    "parse_clip_sets": "options",
    "run_from_args": "run",
    "track_params": "tracks",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
