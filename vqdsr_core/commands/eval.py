"""``vqdsr eval``: quality evidence on held-out clips (bicubic, realesr-animevideov3, vsvqdsr weight files)."""

from __future__ import annotations

import argparse


def _eval(args: argparse.Namespace) -> int:
    from ..evaluation import run_from_args

    return run_from_args(args)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval",
        help="score vsvqdsr vs bicubic and realesr-animevideov3 on held-out clips (QUALITY.md + crops)",
        description=(
            "Degrade held-out HR clips with two fixed tracks (web: area x4 + H.264 CRF 30; old: blur + area x4 + "
            "NTSC composite + MPEG-2), upscale them with every method (vsvqdsr through its VapourSynth filter) and "
            "write PSNR-Y / SSIM-Y / LPIPS / temporal error / s-per-frame tables, a bar check and crops to --out."
        ),
    )
    from ..evaluation.run import add_arguments

    add_arguments(p)
    p.set_defaults(func=_eval)
