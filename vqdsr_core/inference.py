"""Sequential inference of the recurrent VSR net: one frame at a time, with the hidden state kept between calls.

``SequentialUpscaler`` is the single place where the VapourSynth plugin (``vsvqdsr.upscale``) and the
``vqdsr upscale`` command run the model. It holds the model, its device/dtype and the recurrent state
(64-channel state, plus the previous SR frame for the AnimeSR feedback variant), replicate-pads LR frames to the
model modulus (4) and crops the x4 output, and can run the cell in spatial tiles while keeping the state for the
full frame.
"""

from __future__ import annotations

import logging
import shutil
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from .models.vsr import MODULUS, SCALE

log = logging.getLogger(__name__)

VSR_ARCHS = ("vqdsr_vsr", "animesr_vsr")
# receptive-field radius of RecurrentVSRNet.cell in LR pixels (measured by back-propagating from one pixel)
CELL_RECEPTIVE_RADIUS = 24

CellFn = Callable[..., tuple[Tensor, Tensor]]


def tune_cpu_malloc(threshold: int = 1 << 30) -> bool:
    """glibc: keep per-frame tensors on the heap instead of mmap/munmap for every allocation over 128 KB-32 MB.

    Without it every cell call page-faults and zeroes ~170 MB (fp32) / ~50 MB (bf16) of fresh pages
    (bench/PERFORMANCE.md). Threads that have not allocated yet (VapourSynth's workers) also share the main
    arena: a thread arena lives in 64 MB heaps that glibc unmaps whenever one empties, whatever the trim
    threshold, which costs ~6,500 page faults per bf16 frame. Process-wide and idempotent; False where glibc's
    mallopt is unavailable.
    """
    import ctypes
    import ctypes.util

    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        ok = bool(libc.mallopt(-3, threshold)) and bool(libc.mallopt(-1, threshold))  # M_MMAP_, M_TRIM_THRESHOLD
        return ok and bool(libc.mallopt(-8, 1))  # M_ARENA_MAX
    except (OSError, AttributeError):
        return False


def compiled_cell(model: nn.Module) -> CellFn:
    """``torch.compile`` (inductor, freezing) of ``model.cell`` for CPU; the eager cell without a C++ compiler.

    Compilation happens on the first call (tens of seconds on 2 cores); any failure there logs a warning and
    falls back to the eager cell for good. Dynamo guards on which inputs are the same tensor object, and the
    recurrence passes frame t itself as its neighbour at the clip's ends and at cuts (``prev is cur``): such
    inputs are cloned, so one graph serves every frame instead of one compile per aliasing pattern.
    """
    if not any(shutil.which(c) for c in ("g++", "c++", "clang++")):
        log.warning("SequentialUpscaler: compile=True but no C++ compiler (g++) found; running eager")
        return model.cell
    fn = [torch.compile(model.cell, dynamic=False, options={"freezing": True})]

    def cell(*args: Tensor | None) -> tuple[Tensor, Tensor]:
        args = tuple(a.clone() if a is not None and any(a is b for b in args[:i]) else a for i, a in enumerate(args))
        try:
            return fn[0](*args)
        except Exception as e:  # inductor / compiler trouble: keep rendering
            if fn[0] is model.cell:
                raise
            log.warning("SequentialUpscaler: torch.compile failed (%s: %s); running eager", type(e).__name__, e)
            fn[0] = model.cell
            return model.cell(*args)

    return cell


def _round_up(x: int, m: int) -> int:
    return -(-x // m) * m


def tile_windows(size: int, tile: int, pad: int) -> list[tuple[int, int, int, int]]:
    """Split ``[0, size)`` into cores of ``tile`` with equal-sized windows reaching ``pad`` past each core.

    Returns (core_start, core_end, window_start, window_end); every window has the same length
    ``min(size, tile + 2 * pad)`` (so a compiled engine sees one shape) and starts on a multiple of ``MODULUS``
    when ``size``, ``tile`` and ``pad`` are multiples of it (so the stride-2 grids line up with the full frame).
    """
    if tile <= 0 or pad < 0 or size <= 0:
        raise ValueError(f"tile_windows: need size > 0, tile > 0, pad >= 0; got {size}, {tile}, {pad}")
    win = min(size, tile + 2 * pad)
    out = []
    for c0 in range(0, size, tile):
        c1 = min(c0 + tile, size)
        w0 = min(max(c0 - pad, 0), size - win)
        out.append((c0, c1, w0, w0 + win))
    return out


class SequentialUpscaler:
    """Run ``RecurrentVSRNet.cell`` frame by frame: ``reset()``, then ``step(prev, cur, next)`` per frame.

    Frames are (3, h, w) or (1, 3, h, w) tensors, or sequences of three (h, w) numpy planes, in [0, 1]
    (clamped). All frames between two ``reset()`` calls must share one size. ``tile=(w, h)`` runs the cell on
    overlapping spatial tiles (``tile_pad`` LR pixels of context each side; ``CELL_RECEPTIVE_RADIUS`` or more
    makes tiling exact up to float rounding) while the state stays a full-frame tensor.
    """

    def __init__(
        self,
        model: nn.Module,
        *,
        device: torch.device | str = "cpu",
        dtype: torch.dtype = torch.float32,
        tile: tuple[int, int] | None = None,
        tile_pad: int = CELL_RECEPTIVE_RADIUS,
        channels_last: bool = True,
        compile: bool = False,
        single_frame: bool | None = None,
        func: str = "SequentialUpscaler",
    ) -> None:
        self.func = func  # the public name in error messages
        if not hasattr(model, "cell") or not hasattr(model, "feedback"):
            raise ValueError(f"{func}: expected a RecurrentVSRNet, got {type(model).__name__}")
        if tile is not None:
            if len(tile) != 2 or any(int(t) != t or t < MODULUS for t in tile):
                raise ValueError(f"{func}: tile must be (width, height) >= {MODULUS}, got {tile!r}")
        if int(tile_pad) != tile_pad or tile_pad < 0:
            raise ValueError(f"{func}: tile_pad must be an int >= 0, got {tile_pad!r}")
        self.device = torch.device(device)
        self.dtype = dtype
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.model = model.to(device=self.device, dtype=dtype, memory_format=self.memory_format).eval()
        self.feedback = bool(model.feedback)
        self.prime_steps = int(getattr(model, "prime_steps", 0))
        if single_frame is not None and not isinstance(single_frame, bool):
            raise ValueError(f"{func}: single_frame must be True, False or None, got {single_frame!r}")
        # RecurrentVSRNet.single_frame: every frame alone, from a zero state on (t, t, t); None = the model's own
        self.single_frame = bool(getattr(model, "single_frame", False)) if single_frame is None else single_frame
        self.tile = None if tile is None else (_round_up(int(tile[0]), MODULUS), _round_up(int(tile[1]), MODULUS))
        self.tile_pad = _round_up(int(tile_pad), MODULUS)
        self.cell_fn: CellFn = self.model.cell  # replaced by a compiled cell (TensorRT) when asked
        if self.device.type == "cpu":
            tune_cpu_malloc()
            if compile:
                self.cell_fn = compiled_cell(self.model)
        self.size: tuple[int, int] | None = None  # (h, w) of the LR frames
        self.state: Tensor | None = None
        self.prev_sr: Tensor | None = None
        self.zero: tuple[Tensor, Tensor | None] | None = None  # single-frame runs: the zero start, made once per size
        self.frames_since_reset = 0

    @classmethod
    def from_weights(
        cls,
        path: str | Path,
        *,
        device: str | torch.device = "auto",
        precision: str = "auto",
        func: str = "SequentialUpscaler",
        **kwargs,
    ) -> SequentialUpscaler:
        """Load a ``vqdsr_vsr`` / ``animesr_vsr`` weight file and pick device and dtype (see vqdsr_core.device)."""
        from .device import pick_device, pick_dtype
        from .weights import load_model

        dev = pick_device(device, func=func)
        dtype = pick_dtype(precision, dev, func=func)
        model, info = load_model(path, arch=VSR_ARCHS, device=dev, dtype=dtype)
        up = cls(model, device=dev, dtype=dtype, func=func, **kwargs)
        up.weights_sha256 = info.sha256
        log.debug("%s: loaded %s (%s) on %s as %s", func, info.path, info.arch, dev, dtype)
        return up

    # ------------------------------------------------------------------ frames
    @property
    def padded_size(self) -> tuple[int, int]:
        if self.size is None:
            raise RuntimeError("SequentialUpscaler: no frame seen yet")
        return _round_up(self.size[0], MODULUS), _round_up(self.size[1], MODULUS)

    @torch.inference_mode()
    def new_buffer(self) -> Tensor:
        """An uninitialised (1, 3, H, W) input buffer of the padded size, for ``prepare(..., out=buf)``."""
        h, w = self.padded_size
        return torch.empty(1, 3, h, w, device=self.device, dtype=self.dtype).contiguous(
            memory_format=self.memory_format
        )

    @torch.inference_mode()
    def prepare(self, frame: Tensor | np.ndarray | Sequence[np.ndarray], out: Tensor | None = None) -> Tensor:
        """Move one LR frame to the device/dtype, clamp to [0, 1] and replicate-pad to a multiple of 4.

        ``out`` (from ``new_buffer()``) is filled in place, so a caller can recycle a few buffers and avoid
        per-frame allocations. Returns a (1, 3, H, W) inference tensor, like everything ``step`` makes (a compiled
        cell would compile again for inputs that differ in that).
        """
        if isinstance(frame, Tensor):
            planes = [frame.reshape(-1, *frame.shape[-2:])]
            if frame.dim() not in (3, 4) or planes[0].shape[0] != 3:
                raise ValueError(f"{self.func}: expected (3,h,w) or (1,3,h,w) frames, got {tuple(frame.shape)}")
            planes = list(planes[0])
        else:
            if len(frame) != 3:
                raise ValueError(f"{self.func}: expected 3 planes, got {len(frame)}")
            with warnings.catch_warnings():  # read-only views (e.g. VapourSynth planes) are only read here
                warnings.filterwarnings("ignore", message="The given NumPy array is not writable")
                planes = [torch.from_numpy(np.asarray(p)) for p in frame]
        h, w = planes[0].shape[-2:]
        if any(p.shape != planes[0].shape for p in planes):
            raise ValueError(f"{self.func}: the three planes differ in size")
        if h < 1 or w < 1:
            raise ValueError(f"{self.func}: empty frame {w}x{h}")
        if self.size is None:
            self.size = (h, w)
        elif self.size != (h, w):
            raise ValueError(
                f"{self.func}: frame is {w}x{h}, expected {self.size[1]}x{self.size[0]} (one size per clip)"
            )
        if out is None:
            out = self.new_buffer()
        for c, p in enumerate(planes):
            out[0, c, :h, :w].copy_(p, non_blocking=True)
        out[..., :h, :w].clamp_(0.0, 1.0)
        H, W = out.shape[-2:]
        if W > w:
            out[..., :h, w:].copy_(out[..., :h, w - 1 : w].expand(-1, -1, -1, W - w))
        if H > h:
            out[..., h:, :].copy_(out[..., h - 1 : h, :].expand(-1, -1, H - h, -1))
        return out

    # ------------------------------------------------------------------ recurrence
    def reset(self) -> None:
        """Forget the recurrent state: the next step starts from zeros, as at the start of a clip or scene."""
        self.state = None
        self.prev_sr = None
        self.frames_since_reset = 0

    def _init_state(self, ref: Tensor) -> None:
        state, prev_sr = self.model.init_state(ref)
        self.state = state.contiguous(memory_format=self.memory_format)
        self.prev_sr = None if prev_sr is None else prev_sr.contiguous(memory_format=self.memory_format)

    @torch.inference_mode()
    def step(self, prev: Tensor, cur: Tensor, nxt: Tensor, *, prepared: bool = False) -> Tensor:
        """One recurrent step on LR frames t-1, t, t+1 -> SR frame t, (1, 3, 4h, 4w) in [0, 1] on the device.

        With ``prepared=True`` the frames are outputs of ``prepare()`` and are used as they are.
        """
        if not prepared:
            prev, cur, nxt = (self.prepare(x) for x in (prev, cur, nxt))
        if self.single_frame:  # every frame from the same zero start (the cell never writes into its inputs)
            prev = nxt = cur
            if self.zero is None or self.zero[0].shape[-2:] != cur.shape[-2:]:
                self._init_state(cur)
                self.zero = (self.state, self.prev_sr)
            self.state, self.prev_sr = self.zero
        elif self.state is None:
            self._init_state(cur)
            for _ in range(self.prime_steps):  # RecurrentVSRNet.prime_steps: the state sees the first window first
                self._advance(prev, cur, nxt)
        sr = self._advance(prev, cur, nxt)
        self.frames_since_reset += 1
        h, w = self.size
        return sr[..., : h * SCALE, : w * SCALE].clamp(0.0, 1.0)

    def _advance(self, prev: Tensor, cur: Tensor, nxt: Tensor) -> Tensor:
        """One cell run (whole frame or tiled) that moves the state on; returns the unclamped SR frame."""
        if self.tile is None:
            sr, state = self.cell_fn(prev, cur, nxt, self.state, self.prev_sr)
        else:
            sr, state = self._tiled_cell(prev, cur, nxt)
        self.state = state
        if self.feedback:
            self.prev_sr = sr  # the net feeds back its unclamped output
        return sr

    def _tiled_cell(self, prev: Tensor, cur: Tensor, nxt: Tensor) -> tuple[Tensor, Tensor]:
        H, W = cur.shape[-2:]
        tw, th = self.tile
        sr = cur.new_empty(1, 3, H * SCALE, W * SCALE).contiguous(memory_format=self.memory_format)
        state = torch.empty_like(self.state)
        for y0, y1, wy0, wy1 in tile_windows(H, th, self.tile_pad):
            for x0, x1, wx0, wx1 in tile_windows(W, tw, self.tile_pad):
                win = (..., slice(wy0, wy1), slice(wx0, wx1))
                fb = None
                if self.prev_sr is not None:
                    fb = self.prev_sr[..., wy0 * SCALE : wy1 * SCALE, wx0 * SCALE : wx1 * SCALE]
                t_sr, t_state = self.cell_fn(prev[win], cur[win], nxt[win], self.state[win], fb)
                cy, cx = slice(y0 - wy0, y1 - wy0), slice(x0 - wx0, x1 - wx0)
                state[..., y0:y1, x0:x1] = t_state[..., cy, cx]
                sr[..., y0 * SCALE : y1 * SCALE, x0 * SCALE : x1 * SCALE] = t_sr[
                    ..., cy.start * SCALE : cy.stop * SCALE, cx.start * SCALE : cx.stop * SCALE
                ]
        return sr, state


def luma_difference(a: Tensor, b: Tensor) -> float:
    """Mean absolute difference of BT.709 luma between two RGB frames in [0, 1] (scene-cut measure)."""
    from .metrics import rgb_to_y

    ya = rgb_to_y(a.reshape(-1, *a.shape[-2:])[:3].float())
    yb = rgb_to_y(b.reshape(-1, *b.shape[-2:])[:3].float())
    return float((ya - yb).abs().mean())


def upscale_frames(
    upscaler: SequentialUpscaler,
    frames: Sequence[Tensor],
    *,
    cuts: Sequence[int] = (),
) -> list[Tensor]:
    """Linear reference pass over a list of (3, h, w) frames with resets at ``cuts`` (frame indices)."""
    cut = set(cuts)
    n = len(frames)
    outs = []
    upscaler.reset()
    for t in range(n):
        if t in cut:
            upscaler.reset()
        prev = frames[t] if t == 0 or t in cut else frames[t - 1]
        nxt = frames[t] if t == n - 1 or (t + 1) in cut else frames[t + 1]
        outs.append(upscaler.step(prev, frames[t], nxt)[0].float().cpu())
    return outs
