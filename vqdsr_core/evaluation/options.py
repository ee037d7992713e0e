"""The command-line options of ``vqdsr eval`` / ``python -m bench.quality`` (no torch import: ``--help`` is fast)."""

from __future__ import annotations

import argparse
from collections.abc import Iterable
from pathlib import Path

from .tracks import TRACKS


def _weights_arg(text: str) -> tuple[str, Path]:
    name, sep, path = text.partition("=")
    if not sep or not name.strip() or not path.strip():
        raise argparse.ArgumentTypeError(f"--weights must look like NAME=PATH, got {text!r}")
    return name.strip(), Path(path.strip()).expanduser()


def _clip_set(text: str) -> tuple[str, Path]:
    """``NAME=PATH`` or a plain ``PATH`` (named after its folder); a path that exists as typed is never split."""
    name, sep, path = text.partition("=")
    if sep and "/" not in name and not Path(text).expanduser().exists():
        if not name.strip() or not path.strip():
            raise argparse.ArgumentTypeError(f"--clips must look like PATH or NAME=PATH, got {text!r}")
        return name.strip(), Path(path.strip()).expanduser()
    p = Path(text).expanduser()
    return (p.resolve().name or str(p)), p


def parse_clip_sets(specs: Iterable[str | tuple[str, Path]]) -> dict[str, Path]:
    """``--clips`` values (``PATH`` or ``NAME=PATH``) -> {set name: folder}; ValueError on a repeated name."""
    sets: dict[str, Path] = {}
    for spec in specs:
        name, path = _clip_set(spec) if isinstance(spec, str) else spec
        if name in sets:
            raise ValueError(f"parse_clip_sets: clip set name {name!r} given twice; use NAME=PATH to tell them apart")
        sets[name] = Path(path)
    if not sets:
        raise ValueError("parse_clip_sets: no clip set given")
    return sets


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``vqdsr eval`` / ``python -m bench.quality``."""
    p.add_argument(
        "--clips",
        type=_clip_set,
        action="append",
        required=True,
        metavar="[NAME=]PATH",
        help="a held-out set: folders of PNG frames (+ meta.json with cuts), e.g. openclipart=data/hr_val or "
        "ktuberling=data/kt_val (vqdsr render-heldout). Repeatable: each set is scored alone and all are pooled",
    )
    p.add_argument("--clips-limit", type=int, default=10, help="use at most N clips per set (default 10)")
    p.add_argument("--frames", type=int, default=30, help="use at most N frames per clip (default 30)")
    p.add_argument(
        "--weights",
        type=_weights_arg,
        action="append",
        default=[],
        metavar="NAME=PATH",
        help="a vsvqdsr weight file as a table row (repeatable; the bar check uses 'default', else the first)",
    )
    p.add_argument("--tracks", default="web,old", help=f"comma list of {sorted(TRACKS)} (default web,old)")
    p.add_argument("--out", default="bench/quality_run", help="output folder (default bench/quality_run)")
    p.add_argument("--no-peer", action="store_true", help="skip the realesr-animevideov3 row")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    p.add_argument("--lpips-crop", type=int, default=224, help="LPIPS crop size in HR px; 0 = whole frame")
    p.add_argument("--lpips-crops", type=int, default=2, help="LPIPS crops per scored frame (default 2)")
    p.add_argument("--lpips-every", type=int, default=5, help="score LPIPS on every N-th frame (default 5)")
    p.add_argument("--crops", type=int, default=3, help="side-by-side crop images per set and track (default 3)")
    p.add_argument("--sanity-hr", action="store_true", help=argparse.SUPPRESS)  # HR as a method (tests)
