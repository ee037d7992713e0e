"""``vqdsr upscale IN OUT``: x4 a video file to a video file with the recurrent VSR net, without VapourSynth.

Decodes with PyAV (YUV converted with the stream's matrix or ``--matrix``; an unspecified one is refused, as the
filter does), runs ``SequentialUpscaler`` frame by frame (state reset at scene cuts: mean BT.709 luma difference
above ``--sc-threshold``, the measure the VapourSynth filter uses), optionally downscales (``--scale``/``--width``/
``--height``: swscale Lanczos) and encodes H.264/H.265 BT.709 yuv420p into a temp file next to OUT that is renamed
into place when done (no half-written OUT on errors). Video only. Everything that can be checked is checked before
the model loads.
"""

from __future__ import annotations

import argparse
import logging
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

from ..options import MATRICES, NET_SCALE, output_size, parse_matrix

log = logging.getLogger(__name__)


def _tile(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"tile must look like 256x256, got {text!r}") from e
    if w < 4 or h < 4:
        raise argparse.ArgumentTypeError(f"tile must be at least 4x4, got {text!r}")
    return w, h


# output suffix -> (PyAV container format, the one codec a raw stream takes, or None for any)
CONTAINERS = {
    ".mkv": ("matroska", None),
    ".mp4": ("mp4", None),
    ".mov": ("mov", None),
    ".264": ("h264", "libx264"),
    ".hevc": ("hevc", "libx265"),
}
SWSCALE_MATRICES = (1, 4, 5, 6, 7, 9)  # H.273 codes that FFmpeg's swscale converts (709, fcc, 470bg, 601, 240m, 2020)


def matrix_arg(text: str) -> int:
    """``--matrix`` (``vqdsr upscale`` and ``vqdsr degrade``): a name of ``MATRICES`` or an H.273 code."""
    digits = text.lower() not in MATRICES and text.isascii() and text.isdigit()
    try:
        return parse_matrix(int(text) if digits else text, "--matrix")
    except ValueError as e:
        raise argparse.ArgumentTypeError(str(e).removeprefix("--matrix: ")) from e


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "upscale",
        help="x4 a video file with the recurrent VSR net (file to file, no VapourSynth)",
        description="Upscale IN x4 (or to --scale / --width / --height) into OUT (video stream only) with a "
        "vqdsr_vsr / animesr_vsr weight file, as vsvqdsr.upscale does inside VapourSynth.",
    )
    p.add_argument("input", type=Path, help="input video (anything FFmpeg/PyAV decodes)")
    p.add_argument("output", type=Path, help=f"output video ({', '.join(CONTAINERS)})")
    p.add_argument("--weights", default=None, help="weight file (default: the bundled VSR model)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N (default auto)")
    p.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    p.add_argument(
        "--matrix",
        type=matrix_arg,
        default=None,
        help="YUV matrix of IN (H.273 code or 709, 601, 470bg, 240m, fcc, 2020ncl); needed when IN's is unspecified, "
        "overrides it when given",
    )
    p.add_argument("--scale", type=float, default=NET_SCALE, help="output scale, at most 4 (default 4, the net's)")
    p.add_argument("--width", type=int, default=None, help="output width (alone: the height keeps the aspect)")
    p.add_argument("--height", type=int, default=None, help="output height (alone: the width keeps the aspect)")
    p.add_argument("--tile", type=_tile, default=None, help="LR tile WxH for large frames (default: whole frame)")
    p.add_argument("--tile-pad", type=int, default=24, help="tile context in LR pixels (24 = exact; default 24)")
    p.add_argument("--sc-threshold", type=float, default=0.1, help="scene-cut threshold; < 0 disables (default 0.1)")
    p.add_argument(
        "--single-frame",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="every frame from itself alone (--no-single-frame: recurrent); default: as the weight file says",
    )
    p.add_argument("--codec", default="libx264", choices=["libx264", "libx265"], help="encoder (default libx264)")
    p.add_argument("--crf", type=int, default=16, help="encoder CRF (default 16)")
    p.add_argument("--max-frames", type=int, default=None, help="stop after this many frames")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_upscale)


@dataclass
class VideoSource:
    """What the probe found: frame rate, size, frame count (None: unknown) and how to convert frames to RGB."""

    rate: Fraction
    width: int
    height: int
    frames: int | None
    matrix: int | None  # H.273 code for YUV input; None for RGB/gray
    full_range: bool


def probe_video(path: Path, matrix: int | None) -> VideoSource:
    """Open a video, decode its first frame and settle the YUV matrix and range (before any model is loaded);
    ``vqdsr degrade`` reads its video input the same way."""
    import av

    try:
        with av.open(str(path)) as container:
            if not container.streams.video:
                raise ValueError(f"input {str(path)!r} has no video stream")
            stream = container.streams.video[0]
            rate = stream.average_rate or stream.guessed_rate or Fraction(24)
            first = next(container.decode(stream), None)
            total = stream.frames or None
            if total is None and container.duration:
                total = round(container.duration / av.time_base * rate) or None
    except av.FFmpegError as e:
        raise ValueError(f"cannot read video {str(path)!r}: {e.strerror or type(e).__name__}") from e
    if first is None:
        raise ValueError(f"input video {str(path)!r} has no frames")
    fmt = first.format
    yuv = not fmt.is_rgb and len(fmt.components) >= 3
    if yuv and matrix is None:
        matrix = int(first.colorspace)
        if matrix not in MATRICES.values():
            raise ValueError(
                f"the YUV matrix of {str(path)!r} is unknown (colorspace {matrix}, unspecified); pass --matrix, "
                "e.g. --matrix 709"
            )
    if yuv and matrix not in SWSCALE_MATRICES:
        raise ValueError(
            f"matrix {matrix} of {str(path)!r} is not one FFmpeg converts {SWSCALE_MATRICES}; use vsvqdsr.upscale"
        )
    full = int(first.color_range) == 2 or fmt.name.startswith("yuvj")  # JPEG range; YUV defaults to limited
    return VideoSource(Fraction(rate), first.width, first.height, total, matrix if yuv else None, full)


def read_video(path: Path, src: VideoSource, limit: int | None = None) -> Iterator:
    """(3, h, w) float RGB frames in [0, 1], converted with the probed matrix and range."""
    import av
    import torch

    kwargs = {}
    if src.matrix is not None:
        kwargs = {"src_colorspace": src.matrix, "src_color_range": 2 if src.full_range else 1}
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for i, frame in enumerate(container.decode(stream)):
            if limit is not None and i >= limit:
                return
            deep = frame.format.components[0].bits > 8
            rgb = frame.reformat(format="rgb48le" if deep else "rgb24", **kwargs).to_ndarray()  # (h, w, 3)
            x = torch.from_numpy(rgb.astype("float32") if deep else rgb).permute(2, 0, 1)
            yield x.float().div_(65535.0 if deep else 255.0)


def _check_output(path: Path, codec: str) -> str:
    """The PyAV container format for OUT; an error naming OUT when its suffix or folder does not fit."""
    if path.is_dir():
        raise ValueError(f"output {str(path)!r} is a folder; give a video file name ({', '.join(CONTAINERS)})")
    fmt, only = CONTAINERS.get(path.suffix.lower(), (None, None))
    if fmt is None:
        raise ValueError(f"output {str(path)!r}: unknown video suffix {path.suffix!r}; use {', '.join(CONTAINERS)}")
    if only is not None and codec != only:
        raise ValueError(f"output {str(path)!r}: a raw {path.suffix} stream needs --codec {only}")
    return fmt


def _upscale(args: argparse.Namespace) -> int:
    import av
    import torch

    from ..cli import Progress
    from ..fileio import temp_beside
    from ..inference import SequentialUpscaler, luma_difference
    from ..weights import resolve_weights

    func = "vqdsr upscale"
    if args.input.is_dir():
        raise ValueError(f"input {str(args.input)!r} is a folder; give a video file")
    if not args.input.is_file():
        raise FileNotFoundError(f"input video {str(args.input)!r} does not exist")
    if args.max_frames is not None and args.max_frames < 1:
        raise ValueError(f"--max-frames must be >= 1, got {args.max_frames}")
    container_format = _check_output(args.output, args.codec)
    src = probe_video(args.input, args.matrix)
    # yuv420p output: even sizes
    size = output_size(src.width, src.height, scale=args.scale, width=args.width, height=args.height, mod=(2, 2),
                       func=func)  # fmt: skip
    down = "LANCZOS" if size != (NET_SCALE * src.width, NET_SCALE * src.height) else None  # swscale's: 3 taps
    up = SequentialUpscaler.from_weights(
        resolve_weights(args.weights, "vsr"),
        device=args.device,
        precision=args.precision,
        func=func,
        tile=args.tile,
        tile_pad=args.tile_pad,
        single_frame=args.single_frame,
    )
    total = min(filter(None, (src.frames, args.max_frames)), default=None)
    tmp = temp_beside(args.output, args.output.suffix)
    n = 0
    t0 = time.perf_counter()
    try:
        with (
            av.open(str(tmp), "w", format=container_format) as out,
            Progress(total, func, enabled=not args.no_progress) as bar,
        ):
            stream = out.add_stream(args.codec, rate=src.rate)
            stream.width, stream.height = size
            stream.pix_fmt = "yuv420p"
            stream.options = {"crf": str(args.crf)}
            stream.codec_context.colorspace = 1  # BT.709, as encoded below
            stream.codec_context.color_range = 1  # limited
            frames = read_video(args.input, src, args.max_frames)
            cur = next(frames)
            prev, cut = cur, True
            while cur is not None:
                nxt = next(frames, None)
                nxt_cut = nxt is not None and args.sc_threshold >= 0 and luma_difference(cur, nxt) > args.sc_threshold
                if cut:
                    up.reset()
                    prev = cur
                sr = up.step(prev, cur, cur if nxt is None or nxt_cut else nxt)
                rgb = sr[0].mul(255).round_().to(device="cpu", dtype=torch.uint8).permute(1, 2, 0).contiguous()
                frame = av.VideoFrame.from_ndarray(rgb.numpy(), format="rgb24")
                frame = frame.reformat(width=size[0], height=size[1], format="yuv420p", dst_colorspace="ITU709",
                                       dst_color_range="MPEG", interpolation=down)  # fmt: skip
                for packet in stream.encode(frame):
                    out.mux(packet)
                n += 1
                bar.update()
                prev, cur, cut = cur, nxt, nxt_cut
            for packet in stream.encode():
                out.mux(packet)
        os.replace(tmp, args.output)
    finally:
        tmp.unlink(missing_ok=True)
    log.info("%s: wrote %s (%d frames, %.2f s/frame)", func, args.output, n, (time.perf_counter() - t0) / n)
    return 0
