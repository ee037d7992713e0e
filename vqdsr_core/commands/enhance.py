"""``vqdsr enhance-hr IN_DIR OUT_DIR``: HR-SR enhancement of training frames (VQD-SR §3.3)."""

from __future__ import annotations

import argparse
import logging

log = logging.getLogger(__name__)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "enhance-hr",
        help="sharpen HR training frames: realesr-animevideov3 x4, then antialiased bicubic back to size",
        description=(
            "HR-SR enhancement (VQD-SR §3.3). Every folder of frames under IN_DIR (and every video, when video "
            "reading is available) becomes a folder of PNG frames at the same relative path under OUT_DIR. "
            "Frames already written are skipped, so an interrupted run resumes."
        ),
    )
    p.add_argument("in_dir", metavar="IN_DIR", help="folder of frames or of clip sub-folders (searched recursively)")
    p.add_argument("out_dir", metavar="OUT_DIR", help="output folder (mirrors IN_DIR's layout)")
    p.add_argument("--tile", type=int, default=0, help="process big frames in tiles of this many px (0: whole frame)")
    p.add_argument("--pad", type=int, default=10, help="reflect padding in px around each frame (default 10)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    p.add_argument(
        "--precision", default="fp32", choices=("auto", "fp32", "fp16", "bf16"), help="model precision (default fp32)"
    )
    p.add_argument("--overwrite", action="store_true", help="redo frames that already exist in OUT_DIR")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..device import pick_device, pick_dtype
    from ..enhance import enhance_tree
    from ..importers.ncnn import load_animevideov3

    if args.tile < 0 or (0 < args.tile < 16):
        raise ValueError(f"--tile must be 0 or >= 16, got {args.tile}")
    if args.pad < 0:
        raise ValueError(f"--pad must be >= 0, got {args.pad}")
    device = pick_device(args.device, func="enhance-hr")
    dtype = pick_dtype(args.precision, device, func="enhance-hr")
    model = load_animevideov3(device=device, dtype=dtype)
    counts = enhance_tree(
        args.in_dir,
        args.out_dir,
        model,
        tile=args.tile,
        pad=args.pad,
        overwrite=args.overwrite,
        progress=not args.no_progress,
    )
    log.info("enhance-hr: wrote %d frames, skipped %d already done", counts["written"], counts["skipped"])
    return 0
