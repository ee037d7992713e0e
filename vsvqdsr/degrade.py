"""``vsvqdsr.degrade``: the VQD-SR multi-scale VQGAN degradation (k-th nearest codes) as a VapourSynth filter.

Stateless and deterministic: the k values of a frame depend only on (seed, frame number) with ``per="frame"``, or
on the seed alone with ``per="clip"``, so any request order and any run give identical frames. The k values used
are written to every output frame as ``VQD_KTop``, ``VQD_KMid`` and ``VQD_KBottom``.
"""

from __future__ import annotations

import threading
from typing import Any

import vapoursynth as vs

from vqdsr_core import options as opt
from vqdsr_core.options import KRange, draw_k

from . import frames as fr

core = vs.core
FUNC = "vsvqdsr.degrade"


def degrade(
    clip: vs.VideoNode,
    /,
    *,
    weights: str | None = None,
    k_top: KRange = opt.K_TOP,
    k_mid: KRange = opt.K_MID,
    k_bottom: KRange = opt.K_BOTTOM,
    seed: int = opt.SEED,
    per: str = opt.PER,
    keep_colour: float = opt.KEEP_COLOUR,
    device: str = "auto",
    precision: str = "fp32",
    matrix: int | str | None = None,
) -> vs.VideoNode:
    """Degrade ``clip`` through the VQ degradation model; same size and format out (see the README).

    weights: ``multiscale_vqgan`` weight file; None = the bundled default "vqgan" model.
    k_top, k_mid, k_bottom: an int k (k-th nearest code) or an inclusive (lo, hi) range drawn uniformly.
    seed, per: ranges are drawn once for the clip (per="clip") or for every frame (per="frame") from (seed, n).
    keep_colour: sigma (px) of the input's Gaussian low-pass kept under the reconstruction, so colours and shading
        stay and only finer detail is degraded; 0 = the raw reconstruction (paper, the default: the bundled model
        meets 30 dB and its colour lock keeps the draws' colours); about 2 for a degrader without either.
    device, precision: as in ``upscale`` (precision defaults to fp32: the nearest-code search is precision-sensitive).
    matrix: YUV matrix when the clip's ``_Matrix`` is unknown.
    """
    from vqdsr_core.degrade.vq import check_keep_colour, degrade_keep_colour

    clip = fr.check_clip(clip, FUNC, min_size=8)
    ks = {"k_top": k_top, "k_mid": k_mid, "k_bottom": k_bottom}
    ranges = tuple(fr.check(FUNC, opt.check_k, name, k, FUNC) for name, k in ks.items())
    fr.check(FUNC, opt.check_seed_per, seed, per, FUNC)
    keep_colour = fr.check(FUNC, check_keep_colour, keep_colour, FUNC)
    work = fr.to_working_rgb(clip, FUNC, matrix=matrix)
    model, dev, dtype = _load(weights, device, precision)
    n_embed, multiscale = int(getattr(model, "n_embed", 1 << 30)), bool(getattr(model, "multiscale", True))
    ranges = fr.check(FUNC, opt.fit_k_ranges, ranges, n_embed, multiscale, FUNC)
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
                buf[0, c].numpy()[:] = planes[c]  # read-only VapourSynth planes: copy through numpy (no torch warning)
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

    def load() -> tuple[Any, Any, Any]:
        dev = pick_device(device, func=FUNC)
        dtype = pick_dtype(precision, dev, func=FUNC)
        model, _ = load_model(resolve_weights(weights, "vqgan"), arch="multiscale_vqgan", device=dev, dtype=dtype)
        return model, dev, dtype

    return fr.check(FUNC, load)
