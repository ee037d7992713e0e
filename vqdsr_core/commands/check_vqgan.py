"""``vqdsr check-vqgan``: is a trained VQGAN a usable degrader (reconstruction, codebook use, sample picture)?"""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "check-vqgan",
        help="score a VQGAN weight file on held-out frames: k=1 PSNR-Y/RGB, degraded PSNR-Y, codes per branch",
        description=(
            "Reconstruct up to --images frames from FRAMES (never trained on) with the VQGAN: PSNR-Y and RGB PSNR "
            "of the plain k=1 reconstruction, PSNR-Y and area-colour RGB PSNR (8x8 block means) of three VQ "
            "degradation draws (k_mid/k_bottom 2/10, 5/25 and 10/50), and per branch how many of the codebook's "
            "codes the frames pick. A degrader whose codes are "
            "mostly unused maps most k-th-nearest draws onto untrained vectors. Prints JSON; --strip writes "
            "input | k=1 | draws as a PNG."
        ),
    )
    p.add_argument("weights", metavar="WEIGHTS", help="multiscale_vqgan weight file (vqdsr export of a VQGAN run)")
    p.add_argument("frames", metavar="FRAMES", help="folder of held-out frames (searched recursively)")
    p.add_argument("--images", type=int, default=16, help="frames scored, evenly spaced (default 16)")
    p.add_argument("--strip", metavar="PNG", help="also write centre crops of 3 frames: input | k=1 | draws")
    p.add_argument(
        "--keep-colour",
        type=float,
        default=0.0,
        metavar="PX",
        help="score the draws with the input's low-pass of this sigma kept, as vsvqdsr.degrade(keep_colour=) "
        "does (default 0: raw reconstructions)",
    )
    p.add_argument(
        "--no-colour-lock",
        action="store_true",
        help="draw without the file's colour lock (vqdsr fit-vq-colour), as the paper's raw k-th-nearest codes",
    )
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..data.clips import load_image, save_png_atomic, to_tensor
    from ..device import pick_device
    from ..evaluation.vqgan_check import check_vqgan, pick_images, sample_strip
    from ..weights import load_model

    if args.images < 1:
        raise ValueError("--images must be >= 1")
    model, _ = load_model(args.weights, arch="multiscale_vqgan", device=pick_device(args.device, func="vqdsr"))
    paths = pick_images(Path(args.frames), args.images)
    images = [to_tensor(load_image(p)) for p in paths]
    lock = not args.no_colour_lock
    report = {"weights": str(args.weights), **check_vqgan(model, images, args.keep_colour, lock)}
    if args.strip:
        shown = images[:: max(1, len(images) // 3)][:3]
        save_png_atomic(sample_strip(model, shown, keep_colour=args.keep_colour, colour_lock=lock), args.strip)
        report["strip"] = args.strip
    json.dump(report, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0
