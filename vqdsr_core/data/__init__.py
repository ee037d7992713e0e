"""Training data: frame-accurate video reading, HR clip / LQ frame datasets, the clip-art animation renderer and
the real-LQ frame corpus (prepare-ral). Submodules import their heavy dependencies lazily."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "VideoReader": "video",
    "VideoError": "video",
    "ClipDataset": "clips",
    "FrameFolderDataset": "clips",
    "list_frame_folders": "clips",
    "list_frames": "clips",
    "load_image": "clips",
    "save_png_atomic": "clips",
    "art_split": "art",
    "list_art": "art",
    "ArtCache": "art",
    "RenderConfig": "render",
    "ClipRenderer": "render",
    "render_clips": "render",
    "prepare_ral": "ral",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
