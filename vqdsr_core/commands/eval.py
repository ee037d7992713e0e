"""``vqdsr eval``: quality evidence on held-out clips (bicubic, realesr-animevideov3, vsvqdsr weight files)."""

from __future__ import annotations

import argparse


def _eval(args: argparse.Namespace) -> int:
    from ..evaluation.run import run_from_args

    return run_from_args(args)


def register(subparsers: argparse._SubParsersAction) -> None:
    from ..evaluation.options import add_arguments  # no torch: ``vqdsr --help`` stays fast

    p = subparsers.add_parser(
        "eval",
        help="score vsvqdsr vs bicubic and realesr-animevideov3 on held-out clip sets (QUALITY.md + crops)",
        description=(
            "Degrade held-out HR clips with two fixed tracks (web: area x4 + H.264 CRF 30 yuv420p BT.709; old: blur "
            "+ area x4 + NTSC composite + MPEG-2), upscale them with every method (vsvqdsr through its VapourSynth "
            "filter) and write PSNR-Y / SSIM-Y / LPIPS / temporal error / still flicker / s-per-frame tables per set "
            "and pooled, a bar check and crops to --out. Pass --clips once per set (NAME=PATH)."
        ),
    )
    add_arguments(p)
    p.set_defaults(func=_eval)
