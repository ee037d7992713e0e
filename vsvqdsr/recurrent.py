"""``vsvqdsr.upscale``: the recurrent x4 VSR net as a VapourSynth filter that keeps its state correct.

VapourSynth calls a ``std.ModifyFrame`` callback one at a time but not in frame order (with several threads
almost every consecutive pair arrives swapped). ``_Recurrence`` serialises the model behind a lock and keeps
``last`` (the frame the state belongs to):

- frame n cached -> return it (bounded cache: frames from before the last seek go first, then the farthest);
- last < n <= last + max_gap -> catch up: fetch inputs last+1..n in order with ``get_frame``, step, cache;
- anything else (backward or far jump) -> reset and warm up on frames max(0, n - warmup)..n-1
  (``strict=True`` raises instead).

A scene cut at t resets the state before t, and the neighbour across the cut is replaced by frame t itself.
Linear renders are therefore bit-identical to one single-threaded pass at any thread count.

A single-frame model (``RecurrentVSRNet.single_frame``, or ``single_frame=True``) needs none of that: ``_EachFrame``
makes every frame from itself alone, so any request order is exact.
"""

from __future__ import annotations

import logging
import threading
from fractions import Fraction
from typing import Any

import vapoursynth as vs

from vqdsr_core.options import output_size, scaled_sar

from . import frames as fr
from .scenes import is_cut, with_scene_difference

core = vs.core
log = logging.getLogger(__name__)
FUNC = "vsvqdsr.upscale"


class _Recurrence:
    """Frame-order layer around a ``SequentialUpscaler`` (one instance per output clip)."""

    def __init__(self, up: Any, src: vs.VideoNode, *, warmup: int, max_gap: int, cache_frames: int,
                 strict: bool, threshold: float | None) -> None:  # fmt: skip
        self.up, self.src = up, src
        self.num_frames = src.num_frames
        self.warmup, self.max_gap, self.cache_frames, self.strict = warmup, max_gap, cache_frames, strict
        self.threshold = threshold
        self.lock = threading.Lock()
        self.last = -1  # frame whose state self.up holds (-1: none)
        self.exact = False  # True when that state equals the one of a linear pass
        self.outputs: dict[int, Any] = {}  # frame -> (3, 4h, 4w) CPU tensor in the model's dtype and layout
        self.epoch: dict[int, int] = {}  # frame -> number of seeks before it was computed
        self.inputs: dict[int, tuple[Any, bool]] = {}  # frame -> (prepared tensor, is cut), at most 4
        self.spare: list[Any] = []
        self.stats = {"steps": 0, "resets": 0, "seeks": 0}

    # ------------------------------------------------------------------ VapourSynth callback
    def __call__(self, n: int, f: list[vs.VideoFrame]) -> vs.VideoFrame:
        blank = f[0]
        fout = core.create_video_frame(blank.format, blank.width, blank.height)  # no copy of the blank pixels
        fout.props.update(blank.props)
        with self.lock:
            out = self.output(n, f[1])
        fr.write_tensor(fout, out)  # outside the lock: the next step can start meanwhile
        return fout

    # ------------------------------------------------------------------ ordering
    def output(self, n: int, frame: vs.VideoFrame | None = None) -> Any:
        hit = self.outputs.get(n)
        if hit is not None:
            return hit
        if self.last < n <= self.last + self.max_gap or (self.strict and n > self.last):
            start, resume = self.last + 1, True
        elif self.strict:
            raise fr.error(
                FUNC,
                f"strict=True and frame {n} was requested after frame {self.last} (non-linear access); render "
                "linearly from the start (e.g. vspipe) or use strict=False",
            )
        else:
            start, resume = max(0, n - self.warmup), False
            self.stats["seeks"] += 1  # outputs cached before this seek are evicted first from now on
            log.debug("%s: seek to %d, warming up from %d", FUNC, n, start)
        out = None
        for t in range(start, n + 1):
            sr = self._step(t, resume=resume and t == start, frame=frame if t == n else None)
            if resume or self.exact or t == n:  # not the warm-up frames of a seek
                out = sr[0].to("cpu")  # a fresh tensor (step clamps); dtype/layout converted once, into the frame
                self._cache(t, out)
        return out

    def _cache(self, t: int, out: Any) -> None:
        self.outputs[t] = out
        self.epoch[t] = now = self.stats["seeks"]
        while len(self.outputs) > self.cache_frames:  # drop frames from before the last seek, then the farthest
            k = max(self.outputs, key=lambda k: (self.epoch[k] != now, abs(k - t), -k))
            del self.outputs[k], self.epoch[k]

    def _input(self, t: int, keep: range, frame: vs.VideoFrame | None = None) -> tuple[Any, bool]:
        hit = self.inputs.get(t)
        if hit is not None:
            return hit
        for old in [k for k in self.inputs if k not in keep]:
            self.spare.append(self.inputs.pop(old)[0])
        if frame is None:
            frame = self.src.get_frame(t)
        buf = self.up.prepare(fr.read_planes(frame), out=self.spare.pop() if self.spare else None)
        entry = (buf, t == 0 or is_cut(frame.props, self.threshold))
        self.inputs[t] = entry
        return entry

    def _step(self, t: int, *, resume: bool, frame: vs.VideoFrame | None) -> Any:
        keep = range(t - 1, t + 2)
        cur, cut = self._input(t, keep, frame)
        if cut or (not resume and t != self.last + 1):
            self.up.reset()
            self.stats["resets"] += 1
            self.exact = cut
        prev = cur if cut else self._input(t - 1, keep)[0]
        nxt = cur
        if t + 1 < self.num_frames:
            nxt_t, nxt_cut = self._input(t + 1, keep)
            nxt = cur if nxt_cut else nxt_t
        sr = self.up.step(prev, cur, nxt, prepared=True)
        self.last = t
        self.stats["steps"] += 1
        return sr


class _EachFrame:
    """Frame layer for single-frame runs: frame n from LR n alone; one model call at a time."""

    def __init__(self, up: Any) -> None:
        self.up = up
        self.lock = threading.Lock()
        self.buf: Any = None  # the prepared input, reused
        self.stats = {"steps": 0}

    def __call__(self, n: int, f: list[vs.VideoFrame]) -> vs.VideoFrame:
        blank = f[0]
        fout = core.create_video_frame(blank.format, blank.width, blank.height)
        fout.props.update(blank.props)
        with self.lock:
            self.buf = cur = self.up.prepare(fr.read_planes(f[1]), out=self.buf)
            out = self.up.step(cur, cur, cur, prepared=True)[0].to("cpu")  # a fresh tensor (step clamps)
            self.stats["steps"] += 1
        fr.write_tensor(fout, out)
        return fout


def upscale(
    clip: vs.VideoNode,
    /,
    *,
    weights: str | None = None,
    device: str = "auto",
    precision: str = "auto",
    warmup: int = 16,
    max_gap: int | None = None,
    cache_frames: int | None = None,
    strict: bool = False,
    scene_change: bool = True,
    sc_threshold: float = 0.1,
    matrix: int | str | None = None,
    tile: tuple[int, int] | None = None,
    tile_pad: int = 24,
    trt: bool = False,
    compile: bool = False,
    scale: float = 4,
    width: int | None = None,
    height: int | None = None,
    single_frame: bool | None = None,
) -> vs.VideoNode:
    """Upscale ``clip`` x4 in width and height with the recurrent VQD-SR / AnimeSR net (see the README).

    weights: weight file (``vqdsr_vsr`` or ``animesr_vsr``); None = the bundled default model.
    device: "auto" (CUDA if available, else CPU), "cpu", "cuda", "cuda:N".
    precision: "auto" (fp16 on CUDA, bf16 on CPUs with native bf16, else fp32), "fp32", "fp16", "bf16".
    warmup: frames run before a frame reached by a seek, to rebuild the state (0 = cold start).
    max_gap: forward jumps up to this many frames are caught up exactly (default max(2*warmup, 2*threads+8)).
    cache_frames: outputs kept for out-of-order requests (default max(8, 2*threads+4)).
    strict: raise on any access that would need a reset (backward or uncaught jumps).
    scene_change: reset the state at cuts (``_SceneChangePrev`` if set, else luma difference > sc_threshold).
    matrix: YUV matrix (H.273 code or name) when the clip's ``_Matrix`` is unknown; overrides the prop.
    tile: (width, height) LR tile for large frames, with tile_pad pixels of context (24 makes tiling exact).
    trt: compile the cell with torch-tensorrt (NVIDIA only; engines cached in the user cache folder).
    compile: CPU only: torch.compile the cell (inductor, freezing; one graph for the clip, 12-80 s to compile or
        ~10 s from inductor's cache, faster frames after that: for long encodes; eager without a C++ compiler).
    scale, width, height: output size: ``scale`` x (at most 4) or a width and/or height (one alone keeps the aspect
        ratio); the net runs at x4, then ``resize.Lanczos`` (3 taps) down to that size.
    single_frame: None = as the weight file says (the bundled default: True); True = every frame from itself alone
        (window t, t, t, zero state: exact in any order, so warmup, max_gap, cache_frames, strict and scene_change
        do nothing); False = recurrent, the paper's way.
    """
    clip = fr.check_clip(clip, FUNC, min_size=4)
    _check_int("warmup", warmup, 0)
    _check_int("tile_pad", tile_pad, 0)
    if max_gap is not None:
        _check_int("max_gap", max_gap, 1)
    if cache_frames is not None:
        _check_int("cache_frames", cache_frames, 1)
    if not isinstance(sc_threshold, int | float) or isinstance(sc_threshold, bool) or not sc_threshold >= 0:
        raise fr.error(FUNC, f"sc_threshold must be a number >= 0, got {sc_threshold!r}")
    for name, val in (("strict", strict), ("scene_change", scene_change), ("trt", trt), ("compile", compile)):
        if not isinstance(val, bool):
            raise fr.error(FUNC, f"{name} must be True or False, got {val!r}")
    if single_frame is not None and not isinstance(single_frame, bool):
        raise fr.error(FUNC, f"single_frame must be None, True or False, got {single_frame!r}")
    if tile is not None:
        if (
            not isinstance(tile, list | tuple)
            or len(tile) != 2
            or any(not isinstance(t, int) or isinstance(t, bool) or t < 4 for t in tile)
        ):
            raise fr.error(FUNC, f"tile must be (width, height) with both >= 4, got {tile!r}")
    ss_w, ss_h = 1 << clip.format.subsampling_w, 1 << clip.format.subsampling_h
    size = fr.check(FUNC, output_size, clip.width, clip.height, scale=scale, width=width, height=height,
                    mod=(ss_w, ss_h), func=FUNC)  # fmt: skip
    work = fr.to_working_rgb(clip, FUNC, matrix=matrix)
    up = _load_upscaler(weights, device, precision, tile, tile_pad, compile and not trt, single_frame)
    if trt:
        _compile(up, clip)
    blank = core.std.BlankClip(work.rgb, width=clip.width * 4, height=clip.height * 4, keep=True)
    if up.single_frame:
        out = core.std.ModifyFrame(blank, [blank, work.rgb], _EachFrame(up))
    else:
        threads = core.num_threads
        src = with_scene_difference(work.rgb) if scene_change else work.rgb
        runner = _Recurrence(
            up,
            src,
            warmup=warmup,
            max_gap=max_gap if max_gap is not None else max(2 * warmup, 2 * threads + 8),
            cache_frames=cache_frames if cache_frames is not None else max(8, 2 * threads + 4),
            strict=strict,
            threshold=sc_threshold if scene_change else None,
        )
        out = core.std.ModifyFrame(blank, [blank, src], runner)
    if size == (blank.width, blank.height):
        return work.back(out)
    out = work.back(core.resize.Lanczos(out, size[0], size[1], filter_param_a=3))
    if width is None or height is None:  # aspect kept (up to rounding): the source's SAR stays valid
        return out
    return _keep_display_aspect(out, (clip.width, clip.height), size)


def _keep_display_aspect(clip: vs.VideoNode, lr_size: tuple[int, int], size: tuple[int, int]) -> vs.VideoNode:
    """``_SARNum``/``_SARDen`` scaled so that stretching ``lr_size`` to ``size`` keeps the display aspect."""
    if size[0] * lr_size[1] == size[1] * lr_size[0]:
        return clip

    def fix_sar(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        if int(f.props.get("_SARNum", 0)) <= 0 or int(f.props.get("_SARDen", 0)) <= 0:
            return f
        sar = scaled_sar(Fraction(int(f.props["_SARNum"]), int(f.props["_SARDen"])), lr_size, size)
        fout = f.copy()
        fout.props["_SARNum"], fout.props["_SARDen"] = sar.numerator, sar.denominator
        return fout

    return core.std.ModifyFrame(clip, clip, fix_sar)


def _check_int(name: str, val: Any, lo: int) -> None:
    if not isinstance(val, int) or isinstance(val, bool) or val < lo:
        raise fr.error(FUNC, f"{name} must be an int >= {lo}, got {val!r}")


def _load_upscaler(
    weights: Any, device: str, precision: str, tile: Any, tile_pad: int, compile: bool, single_frame: bool | None
) -> Any:
    from vqdsr_core.inference import SequentialUpscaler
    from vqdsr_core.weights import resolve_weights

    def load() -> Any:  # WeightsError and bad device/precision are ValueErrors
        return SequentialUpscaler.from_weights(
            resolve_weights(weights, "vsr"), device=device, precision=precision, func=FUNC,
            tile=None if tile is None else tuple(tile), tile_pad=tile_pad, compile=compile, single_frame=single_frame,
        )  # fmt: skip

    return fr.check(FUNC, load)


def _compile(up: Any, clip: vs.VideoNode) -> None:
    from vqdsr_core.models.vsr import MODULUS

    from . import trt

    h, w = (-(-s // MODULUS) * MODULUS for s in (clip.height, clip.width))
    if up.tile is not None:
        h, w = min(h, up.tile[1] + 2 * up.tile_pad), min(w, up.tile[0] + 2 * up.tile_pad)
    try:
        trt.compile_cell(up, (h, w), func=FUNC)
    except RuntimeError as e:
        raise vs.Error(str(e)) from e
