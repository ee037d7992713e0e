"""Scene cuts for the recurrent filter: ``_SceneChangePrev`` when the source sets it, else a luma difference.

The difference is VapourSynth's ``std.PlaneStats`` between frame n and n-1 on BT.709 luma (full range, [0, 1]):
the mean absolute difference, the same measure as ``vqdsr_core.inference.luma_difference``.
"""

from __future__ import annotations

import vapoursynth as vs

core = vs.core

DIFF_PROP = "VSVQDSR_SCDiff"  # internal: never reaches the filter's output (props come from the source clip)


def with_scene_difference(rgb: vs.VideoNode) -> vs.VideoNode:
    """``rgb`` with ``VSVQDSR_SCDiff`` = mean |Y[n] - Y[n-1]| on every frame (0 on frame 0)."""
    gray = core.resize.Point(rgb, format=vs.GRAYS, matrix_s="709")
    shifted = gray if rgb.num_frames == 1 else gray[0] + gray[:-1]
    stats = core.std.PlaneStats(gray, shifted, prop="VSVQDSR_SC")
    return core.std.CopyFrameProps(rgb, stats, props=[DIFF_PROP])


def is_cut(props: vs.FrameProps, threshold: float | None) -> bool:
    """True when a new scene starts at this frame: ``_SceneChangePrev`` if present, else the difference test.

    ``threshold=None`` disables cut handling altogether.
    """
    if threshold is None:
        return False
    if "_SceneChangePrev" in props:
        return bool(props["_SceneChangePrev"])
    return float(props.get(DIFF_PROP, 0.0)) > threshold
