"""Where a VSR file's still flicker comes from: its recurrent run against runs without neighbours or state.

    python -m bench.temporal_diag WEIGHTS data/hr_val [--track web] [--clips 8] [--frames 24]

Degrades a held-out set with an eval track (``vqdsr_core.evaluation.tracks``) and runs the net four ways over each
clip (resets at the clips' cuts): ``recurrent`` (LR t-1, t, t+1 and the state: the paper's run), ``no neighbours``
(LR t, t, t, the state kept), ``no state`` (t-1, t, t+1 from a zero state every frame, primed as the file says) and
``single frame`` (t, t, t from a zero state: ``single_frame=True``). Prints PSNR-Y, tE and still flicker (0-255,
``vqdsr_core.metrics``) per variant, with bicubic for scale. A diagnostic for the ablation notes in QUALITY.md;
``vqdsr eval`` stays the measure of record.
"""

from __future__ import annotations

import argparse

import torch

from vqdsr_core.evaluation.methods import bicubic_x4, to_8bit
from vqdsr_core.evaluation.run import load_clips
from vqdsr_core.evaluation.tracks import TRACKS, make_lr
from vqdsr_core.inference import SequentialUpscaler
from vqdsr_core.metrics import psnr_y, still_flicker, still_steps, temporal_error

VARIANTS = {  # name: (neighbours, state)
    "recurrent": (True, True),
    "no neighbours": (False, True),
    "no state": (True, False),
    "single frame": (False, False),
}


def run(up: SequentialUpscaler, lr: torch.Tensor, cuts: list[int], neighbours: bool, state: bool) -> torch.Tensor:
    """(N, 3, h, w) LR -> (N, 3, 4h, 4w) SR on the 8-bit grid, one variant."""
    n, out = lr.shape[0], []
    bounds = sorted({0, n, *cuts})
    for t in range(n):
        lo = max(b for b in bounds if b <= t)
        hi = min(b for b in bounds if b > t)
        if t == lo or not state:
            up.reset()
        p, q = (max(lo, t - 1), min(hi - 1, t + 1)) if neighbours else (t, t)
        out.append(up.step(lr[p], lr[t], lr[q]).float().cpu()[0])
    return to_8bit(torch.stack(out))


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("weights")
    ap.add_argument("clips", help="held-out set: folders of PNG frames + meta.json (vqdsr render-clips/heldout)")
    ap.add_argument("--track", default="web", choices=sorted(TRACKS))
    ap.add_argument("--clips-limit", type=int, default=8)
    ap.add_argument("--frames", type=int, default=24)
    args = ap.parse_args(argv)
    up = SequentialUpscaler.from_weights(args.weights, device="cpu", precision="auto", single_frame=False)
    primed = up.prime_steps
    rows: dict[str, dict[str, list[float]]] = {}
    for clip in load_clips(args.clips, limit=args.clips_limit, frames=args.frames):
        lr, hr = make_lr(clip.hr, args.track)
        outs = {"bicubic": to_8bit(bicubic_x4(lr))}
        for name, (neighbours, state) in VARIANTS.items():
            up.prime_steps = primed if neighbours or state else 0  # single frame: as single_frame=True runs
            outs[name] = run(up, lr, clip.cuts, neighbours, state)
        held = bool(still_steps(hr, clip.cuts))
        for name, sr in outs.items():
            r = rows.setdefault(name, {"psnr": [], "terr": [], "still": []})
            r["psnr"].append(psnr_y(sr, hr))
            r["terr"].append(255 * temporal_error(sr, hr, clip.cuts))
            if held:  # weighted by its held pairs, as the eval pools them
                r["still"] += [255 * still_flicker(sr, hr, clip.cuts)] * len(still_steps(hr, clip.cuts))
    print(f"{args.clips} ({args.track} track): PSNR-Y / tE / still flicker (0-255)")
    for name, r in rows.items():
        psnr, terr = (sum(r[k]) / len(r[k]) for k in ("psnr", "terr"))
        still = sum(r["still"]) / len(r["still"]) if r["still"] else float("nan")
        print(f"  {name:14s} {psnr:6.2f} {terr:6.3f} {still:6.3f}")


if __name__ == "__main__":
    main()
