"""``vqdsr train-vqgan``, ``vqdsr train-vsr`` and ``vqdsr export``: training through the core library."""

from __future__ import annotations

import argparse

EPILOG = (
    "Config keys are documented in docs/training.md; presets live in training/paper (the reference settings) and "
    "training/cpu (about an hour per stage on a 2-core CPU). Several processes / GPUs / machines: "
    "torchrun --nproc_per_node=N -m vqdsr_core.cli {cmd} ... (DDP: NCCL on GPUs, gloo on CPUs)."
)


EXAMPLES = {  # kind -> (preset, --set examples)
    "vsr": ("training/cpu/vsr.toml", "--set net.lr=2e-4 --set 'data.train=[\"data/clips\"]'"),
    "vqgan": ("training/cpu/vqgan.toml", "--set top.base_lr=1e-5 --set 'data.train=[\"data/lq_frames\"]'"),
}


def _add_common(p: argparse.ArgumentParser, kind: str) -> None:
    preset, sets = EXAMPLES[kind]
    p.add_argument("config", help=f"TOML config file (e.g. {preset})")
    p.add_argument(
        "--set",
        dest="overrides",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help=f"override a config key, e.g. {sets} (repeatable)",
    )
    p.add_argument("--out", metavar="RUN_DIR", help="run folder (default: runs/<config name>_<stage>)")
    p.add_argument("--resume", action="store_true", help="continue from RUN_DIR/latest.pt (or previous.pt)")


def register(subparsers: argparse._SubParsersAction) -> None:
    fmt = argparse.RawDescriptionHelpFormatter
    p = subparsers.add_parser(
        "train-vqgan",
        help="train the multi-scale VQGAN degradation model (stage top, then multi)",
        description="Train the VQGAN of VQD-SR: --stage top (single-scale, VQ + perceptual), then --stage multi "
        "(adds the middle and bottom branches, adversarial loss; multi.init = the top stage's checkpoint).",
        epilog=EPILOG.format(cmd="train-vqgan"),
        formatter_class=fmt,
    )
    _add_common(p, "vqgan")
    p.add_argument("--stage", required=True, choices=("top", "multi"))
    p.set_defaults(func=_train, kind="vqgan")

    p = subparsers.add_parser(
        "train-vsr",
        help="train the recurrent VSR net (stage net, then gan)",
        description="Train the VQD-SR VSR network: --stage net (L1 vs USM-sharpened GT), then --stage gan "
        "(L1 + perceptual + multi-scale LSGAN, gan.init = the net stage's checkpoint, gan.vqgan = a VQGAN for "
        "the VQ degradation).",
        epilog=EPILOG.format(cmd="train-vsr"),
        formatter_class=fmt,
    )
    _add_common(p, "vsr")
    p.add_argument("--stage", required=True, choices=("net", "gan"))
    p.set_defaults(func=_train, kind="vsr")

    p = subparsers.add_parser(
        "export",
        help="turn a training checkpoint into a plugin weight file (or the VSR cell into ONNX)",
        description="Write the network of a training checkpoint (EMA weights by default) as a .safetensors weight "
        "file that vsvqdsr and `vqdsr upscale` load; with --onnx, export the VSR cell (state in, state out).",
    )
    p.add_argument("checkpoint", help="training checkpoint (RUN_DIR/latest.pt, best.pt) or, with --onnx, a weight file")
    p.add_argument("out", help="output file (.safetensors, or .onnx with --onnx)")
    p.add_argument("--raw", action="store_true", help="export the raw weights instead of the EMA copy")
    p.add_argument("--fp16", action="store_true", help="store the weights in half precision")
    p.add_argument("--onnx", action="store_true", help="export the VSR cell as ONNX instead")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.set_defaults(func=_export)


def _train(args: argparse.Namespace) -> int:
    from ..train import run_training

    return run_training(args.kind, args.config, args.stage, overrides=args.overrides, out=args.out, resume=args.resume)


def _export(args: argparse.Namespace) -> int:
    import logging

    import torch

    from ..train.export import export_checkpoint, export_onnx

    log = logging.getLogger("vqdsr.export")
    if args.onnx:
        out = export_onnx(args.checkpoint, args.out, ema=not args.raw, fp16=args.fp16, opset=args.opset)
    else:
        dtype = torch.float16 if args.fp16 else None
        out = export_checkpoint(args.checkpoint, args.out, ema=not args.raw, dtype=dtype)
    log.info("wrote %s", out)
    return 0
