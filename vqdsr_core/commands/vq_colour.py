"""``vqdsr fit-vq-colour``: give a VQGAN degrader a colour lock, so its k-th-nearest draws keep area colours."""

from __future__ import annotations

import argparse
import json
import sys


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "fit-vq-colour",
        help="fit a VQGAN degrader's colour lock on LQ frames and write the weight file with it",
        description=(
            "Encode up to --images frames of FRAMES (the degrader's training corpus), fit per branch a linear map "
            "from the latent to the mean colour of the pixels under it, and write WEIGHTS again to --out with the "
            "three colour directions of each branch. Drawn codes (k > 1) then keep the nearest code's component "
            "along them: the draws change texture and artefacts, not area colours. The network weights are "
            "unchanged, k = 1 reconstructions are identical. Prints the fit's R^2 per branch as JSON."
        ),
    )
    p.add_argument("weights", metavar="WEIGHTS", help="multiscale_vqgan weight file")
    p.add_argument("frames", metavar="FRAMES", help="folder of LQ training frames (searched recursively)")
    p.add_argument("--out", required=True, help="weight file to write (may not be WEIGHTS itself)")
    p.add_argument("--images", type=int, default=48, help="frames used, evenly spaced (default 48)")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ..data.clips import load_image, to_tensor
    from ..evaluation.vqgan_check import crop8, pick_images
    from ..models import build_model
    from ..weights import read_weights, save_weights

    if args.images < 1:
        raise ValueError("fit-vq-colour: --images must be >= 1")
    if Path(args.out).resolve() == Path(args.weights).resolve():
        raise ValueError("fit-vq-colour: --out must not be the input file (write a new one)")
    state, info = read_weights(args.weights)
    if info.arch != "multiscale_vqgan" or not info.config.get("multiscale", True):
        raise ValueError(f"fit-vq-colour: {args.weights} is not a multi-scale VQGAN ({info.arch})")
    config = {**info.config, "colour_lock": True}
    model = build_model("multiscale_vqgan", config)
    state = {k: v for k, v in state.items() if k != "colour_basis"}  # a refit replaces an existing lock
    missing, unexpected = model.load_state_dict({k: v.float() for k, v in state.items()}, strict=False)
    if unexpected or missing != ["colour_basis"]:
        raise ValueError(f"fit-vq-colour: {args.weights} does not fit its own config: {missing} {unexpected}")
    model = model.float().eval()
    images = [crop8(to_tensor(load_image(p)).float()) for p in pick_images(Path(args.frames), args.images)]
    r2 = model.fit_colour_lock(images)
    dtype = next(iter(state.values())).dtype
    extra = {**info.extra, "colour_lock": f"fitted on {len(images)} frames of {args.frames}"}
    save_weights(args.out, model, arch="multiscale_vqgan", config=config, extra=extra, dtype=dtype)
    json.dump({"out": str(args.out), "frames": len(images), "r2": r2}, sys.stdout, indent=1)
    sys.stdout.write("\n")
    return 0
