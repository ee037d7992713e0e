"""``vsvqdsr.degrade``: the VQD-SR multi-scale VQGAN degradation (k-th nearest codes) as a VapourSynth filter.

Stateless and deterministic: the k values of a frame depend only on (seed, frame number) with ``per="frame"``, or
on the seed alone with ``per="clip"``, so any request order and any run give identical frames. The k values used
are written to every output frame as ``VQD_KTop``, ``VQD_KMid`` and ``VQD_KBottom``.
"""

from __future__ import annotations

import threading
from typing import Any

import numpy as np
import vapoursynth as vs

from . import frames as fr

core = vs.core
FUNC = "vsvqdsr.degrade"
KRange = int | tuple[int, int] | list[int]


def _check_k(name: str, k: Any) -> tuple[int, int]:
    def ok(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 1

    if ok(k):
        return k, k
    if isinstance(k, list | tuple) and len(k) == 2 and ok(k[0]) and ok(k[1]) and k[0] <= k[1]:
        return int(k[0]), int(k[1])
    raise fr.error(FUNC, f"{name} must be an int >= 1 or a (lo, hi) range with 1 <= lo <= hi, got {k!r}")


def draw_k(ranges: tuple[tuple[int, int], ...], seed: int, frame: int | None) -> tuple[int, ...]:
    """k per branch, uniform in each inclusive range, from a generator seeded by (seed, frame) or (seed,)."""
    rng = np.random.default_rng([seed] if frame is None else [seed, 1, frame])
    return tuple(int(rng.integers(lo, hi, endpoint=True)) for lo, hi in ranges)


def degrade(
    clip: vs.VideoNode,
    /,
    *,
    weights: str | None = None,
    k_top: KRange = 1,
    k_mid: KRange = (1, 10),
    k_bottom: KRange = (1, 50),
    seed: int = 0,
    per: str = "clip",
    keep_colour: float = 2.0,
    device: str = "auto",
    precision: str = "fp32",
    matrix: int | str | None = None,
) -> vs.VideoNode:
    """Degrade ``clip`` through the VQ degradation model; same size and format out (see the README).

    weights: ``multiscale_vqgan`` weight file; None = the bundled default "vqgan" model.
    k_top, k_mid, k_bottom: an int k (k-th nearest code) or an inclusive (lo, hi) range drawn uniformly.
    seed, per: ranges are drawn once for the clip (per="clip") or for every frame (per="frame") from (seed, n).
    keep_colour: sigma (px) of the input's Gaussian low-pass kept under the reconstruction, so colours and shading
        stay and only finer detail is degraded; 0 = the raw reconstruction (paper). 2 suits the bundled model.
    device, precision: as in ``upscale`` (precision defaults to fp32: the nearest-code search is precision-sensitive).
    matrix: YUV matrix when the clip's ``_Matrix`` is unknown.
    """
    from vqdsr_core.degrade.vq import check_keep_colour, degrade_keep_colour

    clip = fr.check_clip(clip, FUNC, min_size=8)
    ranges = (_check_k("k_top", k_top), _check_k("k_mid", k_mid), _check_k("k_bottom", k_bottom))
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise fr.error(FUNC, f"seed must be an int >= 0, got {seed!r}")
    if per not in ("clip", "frame"):
        raise fr.error(FUNC, f"per must be 'clip' or 'frame', got {per!r}")
    try:
        keep_colour = check_keep_colour(keep_colour, FUNC)
    except ValueError as e:
        raise fr.error(FUNC, str(e)[len(FUNC) + 2 :]) from e
    work = fr.to_working_rgb(clip, FUNC, matrix=matrix)
    model, dev, dtype = _load(weights, device, precision)
    n_embed = int(getattr(model, "n_embed", 1 << 30))
    if max(hi for _, hi in ranges) > n_embed:
        raise fr.error(FUNC, f"k must be <= the codebook size {n_embed}, got ranges {ranges}")
    if not getattr(model, "multiscale", True):
        ranges = (ranges[0], (1, 1), (1, 1))  # a top-only model has no mid/bottom branch
    fixed = draw_k(ranges, seed, None) if per == "clip" else None
    out_np = fr.numpy_dtype(work.rgb)
    lock = threading.Lock()
    buffers: list[Any] = []

    def run(n: int, f: list[vs.VideoFrame]) -> vs.VideoFrame:
        import torch

        ks = fixed if fixed is not None else draw_k(ranges, seed, n)
        planes = fr.read_planes(f[1])
        with lock:
            buf = buffers.pop() if buffers else torch.empty(1, 3, clip.height, clip.width, dtype=torch.float32)
        try:
            for c in range(3):
                buf[0, c].copy_(torch.from_numpy(planes[c]))
            with torch.inference_mode():
                x = buf.to(dev, dtype).clamp_(0, 1)
                y = degrade_keep_colour(model, x, ks, keep_colour)
            out = y[0].to(device="cpu", dtype=torch.float16 if out_np.itemsize == 2 else torch.float32).numpy()
        finally:
            with lock:
                buffers.append(buf)
        fout = f[0].copy()
        fr.write_planes(fout, out)
        fout.props["VQD_KTop"], fout.props["VQD_KMid"], fout.props["VQD_KBottom"] = ks
        return fout

    blank = core.std.BlankClip(work.rgb, keep=True)
    clips = [blank, work.rgb]
    # FrameEval around a fresh ModifyFrame lets VapourSynth run several frames at once (the model is stateless)
    out = core.std.FrameEval(blank, lambda n: core.std.ModifyFrame(blank, clips, run), clip_src=clips)
    return _keep_k_props(work.back(out), out)


def _keep_k_props(result: vs.VideoNode, degraded: vs.VideoNode) -> vs.VideoNode:
    return core.std.CopyFrameProps(result, degraded, props=["VQD_KTop", "VQD_KMid", "VQD_KBottom"])


def _load(weights: Any, device: str, precision: str) -> tuple[Any, Any, Any]:
    from vqdsr_core.device import pick_device, pick_dtype
    from vqdsr_core.weights import load_model, resolve_weights

    try:
        dev = pick_device(device, func=FUNC)
        dtype = pick_dtype(precision, dev, func=FUNC)
        model, _ = load_model(resolve_weights(weights, "vqgan"), arch="multiscale_vqgan", device=dev, dtype=dtype)
    except ValueError as e:
        msg = str(e)
        raise fr.error(FUNC, msg[len(FUNC) + 2 :] if msg.startswith(FUNC) else msg) from e
    return model, dev, dtype
