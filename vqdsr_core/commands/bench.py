"""``vqdsr bench``: the CPU/GPU speed and memory benchmark (same as ``python -m bench.speed``).

The benchmark lives in the source checkout's ``bench/`` folder (it is not installed with the package); this
command finds it next to ``vqdsr_core`` and forwards every argument to ``bench.speed.main``.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from pathlib import Path


def _load_speed():
    """``bench.speed`` from the checkout that holds this ``vqdsr_core`` (or from sys.path)."""
    root = Path(__file__).resolve().parents[2]
    if (root / "bench" / "speed.py").is_file() and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        return importlib.import_module("bench.speed")
    except ModuleNotFoundError as e:
        if e.name not in ("bench", "bench.speed"):
            raise
        raise RuntimeError(
            f"the benchmark (bench/speed.py) is not next to this vqdsr_core ({root}); run it from a source checkout"
        ) from e


def _bench(args: argparse.Namespace) -> int:
    return _load_speed().main(list(args.bench_args), prog="vqdsr bench")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "bench",
        add_help=False,  # --help is forwarded: bench.speed owns the options
        prefix_chars="+",  # so that every "--option" reaches bench_args untouched
        help="speed/memory benchmark: plain loop, SequentialUpscaler, vspipe filter, peers, roofline",
        description="Same as `python -m bench.speed`; `vqdsr bench --help` lists its options.",
    )
    p.add_argument("bench_args", nargs="*", help="options of bench.speed")
    p.set_defaults(func=_bench)
