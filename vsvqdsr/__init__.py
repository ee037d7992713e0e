"""vsvqdsr: VQD-SR animation video super-resolution for VapourSynth.

``vsvqdsr.upscale(clip)`` runs the recurrent x4 VSR net with its state kept correct under any request order;
``vsvqdsr.degrade(clip)`` runs the VQ degradation model. Parameters: the README.
"""

from __future__ import annotations

from .degrade import degrade
from .recurrent import upscale

__all__ = ["degrade", "upscale"]
__version__ = "0.1.0"
