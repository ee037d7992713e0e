"""Clip checks, format conversion to/from the RGB float working format, and frame <-> array helpers."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import vapoursynth as vs

from vqdsr_core.options import MATRICES, MATRIX_RGB, MATRIX_UNSPECIFIED  # noqa: F401 (re-exported)
from vqdsr_core.options import parse_matrix as _parse_matrix

core = vs.core

# torch warns on every from_numpy of a read-only VapourSynth plane; the plane is only read, never written
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")


def error(func: str, message: str) -> vs.Error:
    """A vs.Error whose message starts with the public function name."""
    return vs.Error(f"{func}: {message}")


def check_clip(clip: object, func: str, *, min_size: int) -> vs.VideoNode:
    """Reject non-clips, variable format/size, GRAY, and frames smaller than ``min_size`` pixels."""
    if not isinstance(clip, vs.VideoNode):
        raise error(func, f"clip must be a vapoursynth.VideoNode, got {type(clip).__name__}")
    fmt = clip.format
    if fmt is None or fmt.id == vs.PresetVideoFormat.NONE:
        raise error(func, "variable-format clips are not supported; convert to one format first")
    if clip.width == 0 or clip.height == 0:
        raise error(func, "variable-resolution clips are not supported; resize to one size first")
    if fmt.color_family not in (vs.RGB, vs.YUV):
        raise error(func, f"{fmt.name} is not supported: GRAY and other families have no colour; use RGB or YUV")
    if clip.width < min_size or clip.height < min_size:
        raise error(func, f"frames are {clip.width}x{clip.height}; at least {min_size}x{min_size} is needed")
    if clip.num_frames < 1:
        raise error(func, "the clip has no frames")
    return clip


def parse_matrix(matrix: int | str | None, func: str) -> int | None:
    """``matrix=`` as an H.273 code (``vqdsr_core.options.parse_matrix``), errors as a vs.Error."""
    return check(func, _parse_matrix, matrix, func)


def check(name: str, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Any:
    """``fn(*args, **kwargs)``, its ValueError (a vqdsr_core check) turned into a vs.Error naming function ``name``."""
    try:
        return fn(*args, **kwargs)
    except ValueError as e:
        msg = str(e)
        raise error(name, msg[len(name) + 2 :] if msg.startswith(f"{name}: ") else msg) from e


@dataclass
class WorkingFormat:
    """How an input clip was turned into RGBS/RGBH, and how to turn a result back into the input's format."""

    rgb: vs.VideoNode
    back: Callable[[vs.VideoNode], vs.VideoNode]


def to_working_rgb(clip: vs.VideoNode, func: str, *, matrix: int | str | None = None) -> WorkingFormat:
    """RGBS/RGBH pass through; integer RGB and YUV become RGBS using the clip's (or the given) matrix and range.

    The matrix, range and chroma siting come from ``matrix=`` or frame 0's ``_Matrix``/``_Range``/
    ``_ChromaLocation`` and are used both ways, so the result goes back to the exact input format with consistent
    colour props. Every source prop is copied onto the result.
    """
    fmt = clip.format
    m = parse_matrix(matrix, func)
    if fmt.color_family == vs.RGB and fmt.sample_type == vs.FLOAT and fmt.bits_per_sample in (16, 32):

        def back_float(out: vs.VideoNode) -> vs.VideoNode:
            return core.std.CopyFrameProps(out, clip)

        return WorkingFormat(clip, back_float)

    props = clip.get_frame(0).props
    if fmt.color_family == vs.RGB:
        rng = int(props.get("_Range", 1))
        rgb = core.resize.Point(clip, format=vs.RGBS, range_in=rng)

        def back_rgb(out: vs.VideoNode) -> vs.VideoNode:
            out = core.resize.Point(out, format=fmt.id, range_in=1, range=rng)
            return core.std.SetFrameProps(core.std.CopyFrameProps(out, clip), _Range=rng)

        return WorkingFormat(rgb, back_rgb)

    if m is None:
        m = int(props.get("_Matrix", MATRIX_UNSPECIFIED))
        if m not in set(MATRICES.values()):
            raise error(
                func,
                f"the clip's YUV matrix is unknown (_Matrix={props.get('_Matrix', 'missing')} on frame 0); "
                "pass matrix=, e.g. matrix='709'",
            )
    rng = int(props.get("_Range", 0))
    loc = int(props.get("_ChromaLocation", 0))
    # resize (R81) lets a frame's colour props win over matrix_in=/range_in=/chromaloc_in=: set the values used
    tagged = core.std.SetFrameProps(clip, _Matrix=m, _Range=rng, _ChromaLocation=loc)
    rgb = core.resize.Bicubic(tagged, format=vs.RGBS, matrix_in=m, range_in=rng, chromaloc_in=loc)

    def back_yuv(out: vs.VideoNode) -> vs.VideoNode:
        out = core.resize.Bicubic(out, format=fmt.id, matrix=m, range=rng, chromaloc=loc)
        return core.std.SetFrameProps(core.std.CopyFrameProps(out, clip), _Matrix=m, _Range=rng, _ChromaLocation=loc)

    return WorkingFormat(rgb, back_yuv)


def read_planes(frame: vs.VideoFrame) -> list[np.ndarray]:
    """Zero-copy views of the three planes of an RGB frame."""
    return [np.asarray(frame[p]) for p in range(3)]


def write_planes(frame: vs.VideoFrame, data: np.ndarray) -> None:
    """Copy a (3, H, W) array into a writable RGB frame."""
    for p in range(3):
        np.copyto(np.asarray(frame[p]), data[p], casting="same_kind")


def write_tensor(frame: vs.VideoFrame, data: Any) -> None:
    """Copy a (3, H, W) torch tensor of any float dtype and layout into a writable RGBS/RGBH frame.

    One pass per plane does the dtype conversion and the gather from channels-last (torch's threaded copy), so no
    intermediate contiguous float32 copy is made.
    """
    import torch

    for p in range(3):
        torch.from_numpy(np.asarray(frame[p])).copy_(data[p])


def numpy_dtype(clip: vs.VideoNode) -> np.dtype:
    return np.dtype(np.float16) if clip.format.bits_per_sample == 16 else np.dtype(np.float32)


def clip_from_array(frames: np.ndarray, fmt: int = vs.RGBS, *, fpsnum: int = 24, fpsden: int = 1) -> vs.VideoNode:
    """An in-memory (N, 3, H, W) array as an RGB clip (RGBS: float32 in [0, 1]; RGB24: uint8), one frame per item."""
    if frames.ndim != 4 or frames.shape[1] != 3:
        raise ValueError(f"clip_from_array: expected (N, 3, H, W) frames, got shape {frames.shape}")
    num, _, h, w = frames.shape
    blank = vs.core.std.BlankClip(format=fmt, width=w, height=h, length=num, fpsnum=fpsnum, fpsden=fpsden, keep=True)

    def fill(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        out = f.copy()
        write_planes(out, frames[n])
        return out

    return vs.core.std.ModifyFrame(blank, blank, fill)
