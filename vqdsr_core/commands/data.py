"""``vqdsr prepare-ral`` (real-LQ frame corpus) and ``vqdsr render-clips`` (synthetic HR animation clips)."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 512x288, got {text!r}") from None
    if w < 16 or h < 16:
        raise argparse.ArgumentTypeError(f"size must be at least 16x16, got {text!r}")
    return w, h


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "prepare-ral",
        help="extract a real-LQ frame corpus (PNG) from animation videos, dropping near-duplicate frames",
        description="Extract frames of real low-quality animation videos into OUT/<video stem>/NNNNNNNN.png, "
        "keeping a frame only when its mean absolute difference to the last kept frame is at least "
        "--threshold (0..255 units). Resumable: finished videos are skipped, unfinished ones continue.",
    )
    p.add_argument("inputs", nargs="+", metavar="VIDEO_OR_DIR", help="video files or folders searched recursively")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--threshold", type=float, default=None, help="scene-filter threshold, 0..255 (default 8)")
    p.add_argument("--max-frames", type=int, default=None, help="keep at most N frames per video")
    p.add_argument("--skip-bad", action="store_true", help="skip unreadable videos instead of stopping")
    p.set_defaults(func=_prepare_ral)

    r = subparsers.add_parser(
        "render-clips",
        help="render synthetic HR animation clips from clip-art SVGs (openclipart)",
        description="Render animated clip-art scenes (camera pan/zoom, moving characters, hard cuts) as PNG frame "
        "folders OUT/clip_0000/00000000.png with meta.json. Deterministic per --seed; art comes only from "
        "the chosen --split (10% of SVG file names, by hash, are held out). Resumable.",
    )
    r.add_argument("--out", required=True, help="output folder")
    r.add_argument("--clips", type=int, default=10, help="number of clips (default 10)")
    r.add_argument("--frames", type=int, default=30, help="frames per clip (default 30)")
    r.add_argument("--size", type=_size, default=(1280, 720), help="WxH (default 1280x720; 512x288 is 6x faster)")
    r.add_argument("--seed", type=int, default=0, help="base seed (default 0)")
    r.add_argument("--split", choices=("train", "heldout"), default="train", help="art split (default train)")
    r.add_argument("--cut-prob", type=float, default=0.3, help="probability of a hard cut per clip (default 0.3)")
    r.add_argument("--art-root", default=None, help="folder of SVGs (default /usr/share/openclipart)")
    r.add_argument("--cache-dir", default=None, help="SVG render cache (default: user cache/art)")
    r.add_argument("--renderer", choices=("auto", "rsvg", "cairosvg"), default="auto", help="SVG renderer")
    r.set_defaults(func=_render_clips)


def _prepare_ral(args: argparse.Namespace) -> int:
    from ..data.ral import DEFAULT_THRESHOLD, prepare_ral

    threshold = DEFAULT_THRESHOLD if args.threshold is None else args.threshold
    records = prepare_ral(args.inputs, args.out, threshold, args.max_frames, skip_bad=args.skip_bad)
    kept = sum(r.get("kept", 0) for r in records)
    bad = [r for r in records if "error" in r]
    for r in records:
        if "error" not in r:
            state = "already done" if r.get("skipped") else "done"
            log.info("prepare-ral: %s: kept %d / %d frames (%s)", r["video"], r["kept"], r["frames"], state)
    log.info("prepare-ral: %d videos, %d frames kept, %d unreadable -> %s", len(records), kept, len(bad), args.out)
    return 1 if bad else 0


def _render_clips(args: argparse.Namespace) -> int:
    from ..data.art import DEFAULT_ART_ROOT
    from ..data.render import RenderConfig, render_clips

    w, h = args.size
    cfg = RenderConfig(
        width=w,
        height=h,
        frames=args.frames,
        split=args.split,
        cut_prob=args.cut_prob,
        art_root=str(args.art_root or DEFAULT_ART_ROOT),
    )
    render_clips(args.out, args.clips, cfg, args.seed, cache_dir=args.cache_dir, renderer=args.renderer)
    return 0
