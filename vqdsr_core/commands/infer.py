"""``vqdsr upscale IN OUT``: x4 a video file to a video file with the recurrent VSR net, without VapourSynth.

Decodes with PyAV, runs ``SequentialUpscaler`` frame by frame (state reset at scene cuts: mean BT.709 luma
difference above ``--sc-threshold``, the measure the VapourSynth filter uses), and encodes H.264/H.265 yuv420p
into a temp file next to OUT that is renamed into place when done (no half-written OUT on errors). Video only.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Iterator
from pathlib import Path

log = logging.getLogger(__name__)


def _tile(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"tile must look like 256x256, got {text!r}") from e
    return w, h


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "upscale",
        help="x4 a video file with the recurrent VSR net (file to file, no VapourSynth)",
        description="Upscale IN x4 into OUT (video stream only) with a vqdsr_vsr / animesr_vsr weight file.",
    )
    p.add_argument("input", type=Path, help="input video (anything FFmpeg/PyAV decodes)")
    p.add_argument("output", type=Path, help="output video (.mp4/.mkv/...)")
    p.add_argument("--weights", default=None, help="weight file (default: the bundled VSR model)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    p.add_argument("--tile", type=_tile, default=None, help="LR tile WxH for large frames (default: whole frame)")
    p.add_argument("--tile-pad", type=int, default=24, help="tile context in LR pixels (24 = exact; default 24)")
    p.add_argument("--sc-threshold", type=float, default=0.1, help="scene-cut threshold; < 0 disables (default 0.1)")
    p.add_argument("--codec", default="libx264", choices=["libx264", "libx265"], help="encoder (default libx264)")
    p.add_argument("--crf", type=int, default=16, help="encoder CRF (default 16)")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    p.set_defaults(func=_upscale)


def _frames(path: Path, limit: int | None) -> Iterator:
    import av
    import torch

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            if limit is not None and i >= limit:
                return
            rgb = frame.to_ndarray(format="rgb24")  # (h, w, 3) uint8
            yield torch.from_numpy(rgb).permute(2, 0, 1).float().div_(255)


def _upscale(args: argparse.Namespace) -> int:
    import av
    import torch

    from ..fileio import temp_beside
    from ..inference import SequentialUpscaler, luma_difference
    from ..weights import resolve_weights

    if not args.input.is_file():
        raise FileNotFoundError(f"input video {str(args.input)!r} does not exist")
    if args.max_frames is not None and args.max_frames < 1:
        raise ValueError(f"--max-frames must be >= 1, got {args.max_frames}")
    up = SequentialUpscaler.from_weights(
        resolve_weights(args.weights, "vsr"),
        device=args.device,
        precision=args.precision,
        func="vqdsr upscale",
        tile=args.tile,
        tile_pad=args.tile_pad,
    )
    with av.open(str(args.input)) as probe:
        vstream = probe.streams.video[0]
        rate = vstream.average_rate or vstream.guessed_rate or 24
    tmp = temp_beside(args.output, args.output.suffix)
    n = 0
    t0 = time.perf_counter()
    try:
        with av.open(str(tmp), "w", format=_container_format(args.output)) as out:
            stream = None
            frames = _frames(args.input, args.max_frames)
            cur = next(frames, None)
            if cur is None:
                raise ValueError(f"input video {str(args.input)!r} has no frames")
            prev, cut = cur, True
            while cur is not None:
                nxt = next(frames, None)
                nxt_cut = nxt is not None and args.sc_threshold >= 0 and luma_difference(cur, nxt) > args.sc_threshold
                if cut:
                    up.reset()
                    prev = cur
                sr = up.step(prev, cur, cur if nxt is None or nxt_cut else nxt)
                rgb = sr[0].mul(255).round_().to(device="cpu", dtype=torch.uint8).permute(1, 2, 0).contiguous()
                if stream is None:
                    stream = out.add_stream(args.codec, rate=rate)
                    stream.height, stream.width = rgb.shape[:2]
                    stream.pix_fmt = "yuv420p"
                    stream.options = {"crf": str(args.crf)}
                    stream.codec_context.colorspace = 1  # BT.709, as encoded below
                    stream.codec_context.color_range = 1  # limited
                frame = av.VideoFrame.from_ndarray(rgb.numpy(), format="rgb24")
                for packet in stream.encode(
                    frame.reformat(format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
                ):
                    out.mux(packet)
                n += 1
                if n % 100 == 0:
                    log.info("vqdsr upscale: %d frames, %.2f s/frame", n, (time.perf_counter() - t0) / n)
                prev, cur, cut = cur, nxt, nxt_cut
            for packet in stream.encode():
                out.mux(packet)
        os.replace(tmp, args.output)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("vqdsr upscale: wrote %s (%d frames, %.2f s/frame)", args.output, n, (time.perf_counter() - t0) / n)
    return 0


def _container_format(path: Path) -> str | None:
    """PyAV format name from OUT's suffix (the temp file has the same suffix, so None works too)."""
    return {".mkv": "matroska", ".mp4": "mp4", ".mov": "mov", ".hevc": "hevc", ".264": "h264"}.get(path.suffix.lower())
