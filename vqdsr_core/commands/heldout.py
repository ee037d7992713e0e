"""``vqdsr render-heldout``: the validation-only ktuberling clip set (art that training never draws from)."""

from __future__ import annotations

import argparse

from .data import _size


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "render-heldout",
        help="render the validation-only held-out clips from KDE's ktuberling themes (for vqdsr eval --clips)",
        description="Render clips from the ktuberling-data themes (full painted scenes, stamps on curved paths, "
        "some on twos, sub-pixel pans / tilts / slow zooms, still stretches of >= 6 frames, hard cuts) as "
        "OUT/clip_0000/00000000.png + meta.json. meta.json marks the set validation-only: training datasets "
        "refuse it. The art is GPL-2+ (one theme CC-BY): render it where you evaluate, never commit the frames. "
        "Deterministic per --seed; resumable.",
    )
    p.add_argument("--out", required=True, help="output folder, e.g. data/kt_val")
    p.add_argument("--clips", type=int, default=10, help="number of clips (default 10)")
    p.add_argument("--frames", type=int, default=30, help="frames per clip, >= 24 (default 30)")
    p.add_argument("--size", type=_size, default=(640, 360), help="HR WxH, multiples of 4 (default 640x360)")
    p.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    p.add_argument("--cut-prob", type=float, default=0.5, help="probability of a hard cut per clip (default 0.5)")
    p.add_argument("--themes", default="", help="comma list of theme names (default: all ten)")
    p.add_argument("--root", default=None, help="ktuberling pics folder (default /usr/share/ktuberling/pics)")
    p.add_argument("--cache-dir", default=None, help="SVG render cache (default: user cache/art)")
    p.set_defaults(func=_render_heldout)


def _render_heldout(args: argparse.Namespace) -> int:
    from ..data.ktuberling import KTUBERLING_ROOT, KtConfig, render_heldout

    w, h = args.size
    cfg = KtConfig(
        width=w,
        height=h,
        frames=args.frames,
        cut_prob=args.cut_prob,
        themes=[t.strip() for t in args.themes.split(",") if t.strip()],
        root=str(args.root or KTUBERLING_ROOT),
    )
    render_heldout(args.out, args.clips, cfg, args.seed, cache_dir=args.cache_dir)
    return 0
