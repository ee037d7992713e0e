"""Codec: real lossy video compression in-process with PyAV (H.264 as in the paper; MPEG-2 / MPEG-4 ASP extras).

The paper's step is libx264, yuv420p, CRF ~ U(18, 35), profile baseline / main / high with p 0.1 / 0.2 / 0.7,
drawn per clip. Beyond it: ``mpeg2video`` (MPEG-2 MP) and ``mpeg4`` (MPEG-4 ASP), both with B-frames, at a
fixed quantiser, and several re-encoding generations. Frames are converted to yuv420p (4:2:0 chroma), BT.601
matrix unless a generation says ``"matrix": "bt709"``. The clip is encoded to an
in-memory raw bitstream and decoded back; a frame count mismatch or a codec error is retried once (logged and
counted in ``STATS``) and then raises ``CodecError``. It never falls back to the uncompressed frames.
"""

from __future__ import annotations

import logging
from fractions import Fraction

import numpy as np
import torch
from torch import Tensor

from . import check_clip, check_probs, check_range, check_rng

log = logging.getLogger(__name__)

# name -> (encoder, decoder)
CODECS: dict[str, tuple[str, str]] = {
    "h264": ("libx264", "h264"),
    "mpeg2": ("mpeg2video", "mpeg2video"),
    "mpeg4": ("mpeg4", "mpeg4"),
}
H264_PROFILES = ("baseline", "main", "high")
# Y'CbCr matrix of the yuv420p planes (limited range) -> swscale colorspace. bt601 (swscale's default) is what the
# training pipeline has always used; a generation may ask for bt709 ({"matrix": "bt709"}, e.g. HD web video): the
# stream is then tagged BT.709 (matrix, primaries, transfer) and decoded with that matrix.
MATRICES = {"bt601": "itu601", "bt709": "itu709"}
STATS = {"calls": 0, "retries": 0}


class CodecError(RuntimeError):
    """The encode/decode round trip failed (after its retry)."""


def sample_codec(
    rng: np.random.Generator,
    *,
    codecs: tuple[str, ...] = ("h264",),
    codec_probs: tuple[float, ...] = (1.0,),
    crf: tuple[float, float] = (18.0, 35.0),
    profiles: tuple[str, ...] = H264_PROFILES,
    profile_probs: tuple[float, ...] = (0.1, 0.2, 0.7),
    qscale: tuple[int, int] = (4, 31),
    generations: tuple[int, int] = (1, 1),
) -> dict:
    """Draw the compression of one clip: {"generations": [{"codec", "crf", "profile"} | {"codec", "qscale"}, ...]}.

    ``qscale`` (MPEG-2 / MPEG-4 only) is the fixed quantiser range, 2 (best) .. 31 (worst); a bitrate target would
    be missed on 15-frame clips (the rate control starts at q 2). ``generations`` is the (min, max) number
    of successive encode/decode passes, each drawn independently.
    """
    func = "sample_codec"
    check_rng(rng, func)
    bad = [c for c in codecs if c not in CODECS]
    if bad or not codecs:
        raise ValueError(f"{func}: codecs must be a non-empty subset of {tuple(CODECS)}, got {codecs!r}")
    cp = check_probs(codec_probs, len(codecs), "codec_probs", func)
    if any(p not in H264_PROFILES for p in profiles) or not profiles:
        raise ValueError(f"{func}: profiles must be a non-empty subset of {H264_PROFILES}, got {profiles!r}")
    pp = check_probs(profile_probs, len(profiles), "profile_probs", func)
    crf_lo, crf_hi = check_range(crf, "crf", func, lo=0.0, hi=51.0)
    q_lo, q_hi = check_range(qscale, "qscale", func, lo=1, hi=31)
    if q_lo != int(q_lo) or q_hi != int(q_hi):
        raise ValueError(f"{func}: qscale bounds must be integers, got {qscale!r}")
    g_lo, g_hi = check_range(generations, "generations", func, lo=1, hi=16)
    out = []
    for _ in range(int(rng.integers(int(g_lo), int(g_hi) + 1))):
        codec = codecs[int(rng.choice(len(codecs), p=cp))]
        if codec == "h264":
            prof = profiles[int(rng.choice(len(profiles), p=pp))]
            out.append({"codec": codec, "crf": float(rng.uniform(crf_lo, crf_hi)), "profile": prof})
        else:
            out.append({"codec": codec, "qscale": int(rng.integers(int(q_lo), int(q_hi) + 1))})
    return {"generations": out}


def to_uint8(clip: Tensor) -> np.ndarray:
    """(N, 3, H, W) float [0, 1] -> (N, H, W, 3) uint8, rounded."""
    return clip.detach().float().clamp(0, 1).mul(255).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


def from_uint8(frames: np.ndarray) -> Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float32 in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div(255)


def encode_frames(
    frames: np.ndarray,
    codec: str = "h264",
    *,
    crf: float | None = 23.0,
    profile: str | None = "high",
    qscale: int | None = None,
    bit_rate: int | None = None,
    fps: int = 25,
    preset: str = "medium",
    threads: int = 1,
    b_frames: int = 2,
    matrix: str = "bt601",
) -> bytes:
    """Encode (N, H, W, 3) uint8 RGB frames (H, W even) to a raw yuv420p bitstream (Annex-B for H.264).

    ``matrix`` ("bt601" / "bt709", see ``MATRICES``) converts RGB to limited-range Y'CbCr; bt709 also tags the stream.

    MPEG-2 / MPEG-4 take a fixed quantiser ``qscale`` (1..31) or a ``bit_rate`` target, and use ``b_frames``
    B-frames (DVD / DivX-style GOPs; with B-frames ``mpeg4`` is MPEG-4 ASP).
    H.264 keeps x264's own preset GOP.
    """
    import av

    if codec not in CODECS:
        raise ValueError(f"encode_frames: codec must be one of {tuple(CODECS)}, got {codec!r}")
    _check_matrix(matrix, "encode_frames")
    n, h, w, _ = frames.shape
    ctx = av.CodecContext.create(CODECS[codec][0], "w")
    ctx.width, ctx.height, ctx.pix_fmt = w, h, "yuv420p"
    if matrix == "bt709":  # VUI: what a real HD web file says (1 = BT.709 for matrix, primaries and transfer)
        ctx.colorspace = ctx.color_primaries = ctx.color_trc = 1
    ctx.time_base, ctx.framerate = Fraction(1, fps), Fraction(fps)
    ctx.thread_count = threads
    if codec == "h264":
        opts = {"preset": preset}
        if crf is not None:
            opts["crf"] = f"{crf:.3f}"
        if profile is not None:
            opts["profile"] = profile
        ctx.options = opts
    else:
        if (qscale is None) == (bit_rate is None):
            raise ValueError(f"encode_frames: {codec} needs exactly one of qscale and bit_rate")
        if qscale is not None:
            if not 1 <= qscale <= 31:
                raise ValueError(f"encode_frames: qscale must be in 1..31, got {qscale}")
            ctx.options = {"qmin": str(qscale), "qmax": str(qscale)}
        else:
            ctx.bit_rate = int(bit_rate)
            ctx.bit_rate_tolerance = int(bit_rate)
        ctx.max_b_frames = int(b_frames)
    data = bytearray()
    for i in range(n):
        frame = av.VideoFrame.from_ndarray(frames[i], format="rgb24")
        frame = frame.reformat(format="yuv420p", dst_colorspace=MATRICES[matrix])
        frame.pts = i
        for packet in ctx.encode(frame):
            data += bytes(packet)
    for packet in ctx.encode(None):
        data += bytes(packet)
    return bytes(data)


def _check_matrix(matrix: str, func: str) -> None:
    if matrix not in MATRICES:
        raise ValueError(f"{func}: matrix must be one of {tuple(MATRICES)}, got {matrix!r}")


def decode_bitstream(
    data: bytes, codec: str = "h264", *, threads: int = 1, matrix: str = "bt601"
) -> tuple[np.ndarray, str | None]:
    """Decode a raw bitstream -> ((N, H, W, 3) uint8 RGB frames, the stream's profile name).

    ``matrix``: the Y'CbCr matrix the frames were encoded with (``encode_frames``).
    """
    import av

    if codec not in CODECS:
        raise ValueError(f"decode_bitstream: codec must be one of {tuple(CODECS)}, got {codec!r}")
    _check_matrix(matrix, "decode_bitstream")
    ctx = av.CodecContext.create(CODECS[codec][1], "r")
    ctx.thread_count = threads
    frames = []

    def rgb(f) -> np.ndarray:
        return f.reformat(format="rgb24", src_colorspace=MATRICES[matrix]).to_ndarray()

    for packet in [*ctx.parse(data), *ctx.parse(None)]:
        frames.extend(rgb(f) for f in ctx.decode(packet))
    frames.extend(rgb(f) for f in ctx.decode(None))
    if not frames:
        return np.zeros((0, 0, 0, 3), np.uint8), ctx.profile
    return np.stack(frames), ctx.profile


def roundtrip(
    clip: Tensor, gen: dict, *, fps: int = 25, preset: str = "medium", threads: int = 1
) -> tuple[Tensor, int]:
    """One encode/decode generation of ``gen`` (a dict from ``sample_codec``, optionally with ``"matrix"``) ->
    (decoded clip, bitstream bytes)."""
    func = "codec.roundtrip"
    check_clip(clip, func)
    codec = gen.get("codec")
    if codec not in CODECS:
        raise ValueError(f"{func}: generation {gen!r} has no valid 'codec' (one of {tuple(CODECS)})")
    n, _, h, w = clip.shape
    frames = to_uint8(clip)
    ph, pw = h % 2, w % 2  # yuv420p needs even sizes: edge-pad, crop back after decoding
    if ph or pw:
        frames = np.pad(frames, ((0, 0), (0, ph), (0, pw), (0, 0)), mode="edge")
    if codec == "h264":
        kw = {"crf": float(gen["crf"]), "profile": gen["profile"]}
    else:
        kw = {"qscale": int(gen["qscale"])}
    matrix = gen.get("matrix", "bt601")
    _check_matrix(matrix, func)
    last_err = ""
    for attempt in range(2):
        STATS["calls"] += 1
        try:
            data = encode_frames(frames, codec, fps=fps, preset=preset, threads=threads, matrix=matrix, **kw)
            out, _ = decode_bitstream(data, codec, threads=threads, matrix=matrix)
        except Exception as e:  # av.FFmpegError and friends
            last_err = f"{type(e).__name__}: {e}"
        else:
            if out.shape[0] == n:
                return from_uint8(out[:, :h, :w]).to(clip), len(data)
            last_err = f"decoded {out.shape[0]} frames, expected {n}"
        if attempt == 0:
            STATS["retries"] += 1
            log.warning("codec round trip %s failed (%s); retrying once", gen, last_err)
    raise CodecError(f"{func}: {codec} round trip of a {n}x{h}x{w} clip failed: {last_err}")


def apply_codec(clip: Tensor, params: dict, *, fps: int = 25, preset: str = "medium") -> tuple[Tensor, list[int]]:
    """Run every generation of ``params`` (from ``sample_codec``) -> (clip, bitstream size of each generation)."""
    check_clip(clip, "apply_codec")
    if not isinstance(params, dict) or not isinstance(params.get("generations"), list):
        raise ValueError("apply_codec: params must be the dict returned by sample_codec ({'generations': [...]})")
    sizes = []
    for gen in params["generations"]:
        clip, size = roundtrip(clip, gen, fps=fps, preset=preset)
        sizes.append(size)
    return clip, sizes
