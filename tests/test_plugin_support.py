"""Helpers shared by the plugin tests (no tests here): clips from numpy frames, weight files, videos, y4m, vspipe."""

from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from conftest import cartoon_frames

from vqdsr_core.models.vsr import RecurrentVSRNet
from vqdsr_core.weights import save_weights

ROOT = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
pytest.importorskip("vapoursynth")
import vapoursynth as vs  # noqa: E402

core = vs.core


def tiny_vsr_weights(path: Path, *, feedback: bool = False, num_feat: int = 16, seed: int = 0) -> Path:
    """A random-init VSR weight file (small width: the tests check plumbing, not quality)."""
    torch.manual_seed(seed)
    model = RecurrentVSRNet(num_feat=num_feat, feedback=feedback)
    arch = "animesr_vsr" if feedback else "vqdsr_vsr"
    return save_weights(path, model, arch=arch, config={"num_feat": num_feat})


def train_little(path: Path, *, steps: int = 100, seed: int = 0, lr_size: int = 8, frames: int = 3) -> Path:
    """Full-size VQD-SR net trained ``steps`` L1 steps on x4 area-downscaled cartoon clips (a trained-looking net).

    The LR->HR task makes the net rely on its inputs and its state the way a trained model does; random init
    barely uses the state, so seek tolerances are measured on this model.
    """
    torch.manual_seed(seed)
    model = RecurrentVSRNet()
    opt = torch.optim.Adam(model.parameters(), lr=5e-4)
    hr_size = lr_size * 4
    for step in range(steps):
        hr = torch.from_numpy(cartoon_frames(frames, hr_size, hr_size, seed=10_000 + step, motion=3))
        hr = hr.permute(0, 3, 1, 2).float().div(255)  # (N, 3, H, W)
        lr = F.interpolate(hr, scale_factor=0.25, mode="area")
        loss = (model(lr[None])[0] - hr).abs().mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return save_weights(path, model, arch="vqdsr_vsr", config={}, extra={"card": f"test model, {steps} L1 steps"})


def trained_weights(folder: Path, steps: int = 100) -> Path:
    """The ``train_little`` model in ``folder`` (trained once, reused while the file exists)."""
    path = Path(folder) / f"vqdsr_vsr_l1_{steps}.safetensors"
    if not path.is_file():
        train_little(path, steps=steps)
    return path


def clip_from_frames(frames: np.ndarray, fmt: int = vs.RGBS, props: dict | None = None) -> vs.VideoNode:
    """(n, h, w, 3) uint8 frames -> an RGBS/RGBH clip (values /255), with optional per-clip props."""
    from vsvqdsr.frames import clip_from_array

    clip = clip_from_array(frames.transpose(0, 3, 1, 2).astype(np.float32) / 255, vs.RGBS)
    if fmt != vs.RGBS:
        clip = core.resize.Point(clip, format=fmt)
    return core.std.SetFrameProps(clip, **props) if props else clip


def frame_array(frame: vs.VideoFrame) -> np.ndarray:
    """(planes, h, w) float64 copy of any 3-plane frame (chroma planes may be smaller: kept as a list then)."""
    planes = [np.asarray(frame[p]).astype(np.float64) for p in range(frame.format.num_planes)]
    if all(p.shape == planes[0].shape for p in planes):
        return np.stack(planes)
    return np.concatenate([p.ravel() for p in planes])


def render(clip: vs.VideoNode, order: list[int] | None = None) -> list[np.ndarray]:
    """Frames of ``clip`` as arrays; linear (with VapourSynth's own prefetching) or in the given order."""
    if order is None:
        return [frame_array(f) for f in clip.frames()]
    out: dict[int, np.ndarray] = {}
    for n in order:
        out[n] = frame_array(clip.get_frame(n))
    return [out[n] for n in sorted(out)]


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(1.0 / mse)


def make_h264(path: Path, frames: np.ndarray, fps: int = 24, *, tagged: bool = True) -> Path:
    """Encode (n, h, w, 3) uint8 RGB frames as H.264 yuv420p (PyAV, libx264, every frame an I/P frame): BT.709
    limited range, or with ``tagged=False`` swscale's default (BT.601) and no colour description, as ffmpeg's
    lavfi sources write."""
    import av

    _, h, w, _ = frames.shape
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv420p"
        stream.options = {"crf": "12", "bf": "0"}
        if tagged:
            stream.codec_context.color_range = 1  # MPEG (limited)
            stream.codec_context.colorspace = 1  # BT.709
        for rgb in frames:
            frame = av.VideoFrame.from_ndarray(rgb, format="rgb24")
            if tagged:
                frame = frame.reformat(format="yuv420p", dst_colorspace="ITU709", dst_color_range="MPEG")
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def vspipe_env() -> dict[str, str]:
    """Environment for the venv's vspipe: it finds its Python through .venv/etc/vapoursynth (XDG_CONFIG_HOME)."""
    env = dict(os.environ)
    cfg = Path(sys.prefix) / "etc"
    if (cfg / "vapoursynth" / "vapoursynth.toml").is_file():
        env["XDG_CONFIG_HOME"] = str(cfg)
    return env


def vspipe(args: list[str], timeout: float = 300) -> subprocess.CompletedProcess:
    exe = VENV_BIN / "vspipe"
    return subprocess.run(
        [str(exe), *args], capture_output=True, timeout=timeout, env=vspipe_env(), cwd=ROOT, check=False
    )


def parse_y4m(data: bytes) -> tuple[dict[str, str], list[np.ndarray]]:
    """Parse a YUV4MPEG2 stream (4:2:0, 8 bit) into its header fields and (h*w*3/2,) uint8 frames."""
    if not data.startswith(b"YUV4MPEG2 "):
        raise ValueError(f"not a y4m stream; starts with {data[:40]!r}")
    head_end = data.index(b"\n")
    fields = {tok[:1].decode(): tok[1:].decode() for tok in data[10:head_end].split()}
    w, h = int(fields["W"]), int(fields["H"])
    size = w * h * 3 // 2
    frames, pos = [], head_end + 1
    while pos < len(data):
        if not data.startswith(b"FRAME", pos):
            raise ValueError(f"bad y4m frame header at byte {pos}")
        pos = data.index(b"\n", pos) + 1
        frames.append(np.frombuffer(data, np.uint8, size, pos))
        pos += size
    return fields, frames


def seek_decay(
    weights: Path, frames: np.ndarray, starts: tuple[int, ...], max_dist: int, single_frame: bool | None = None
) -> list[float]:
    """Mean PSNR (dB) of a cold start at s vs the linear pass, by warm-up length d = t - s (d = 0..max_dist).

    A seek to frame n with ``warmup=W`` starts cold at n - W, so its error is this curve at d = W. ``single_frame``
    as in ``SequentialUpscaler`` (None: as the file says; a single-frame run is exact at every d).
    """
    from vqdsr_core.inference import SequentialUpscaler, upscale_frames
    from vqdsr_core.weights import load_model

    up = SequentialUpscaler(load_model(weights)[0], single_frame=single_frame)
    x = list(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255)
    linear = upscale_frames(up, x)
    by_dist: list[list[float]] = [[] for _ in range(max_dist + 1)]
    for s in starts:
        up.reset()
        for d in range(max_dist + 1):
            t = s + d
            out = up.step(x[t - 1], x[t], x[min(t + 1, len(x) - 1)])[0]
            by_dist[d].append(psnr(out.numpy(), linear[t].numpy()))
    return [float(np.mean(v)) for v in by_dist]


def filter_overhead(weights: Path, frames: np.ndarray, repeats: int = 2) -> tuple[float, float]:
    """(plain loop s/frame, filter s/frame): SequentialUpscaler.step vs vsvqdsr.upscale on the same RGBS frames."""
    import time

    import vsvqdsr
    from vqdsr_core.inference import SequentialUpscaler, upscale_frames
    from vqdsr_core.weights import load_model

    x = list(torch.from_numpy(frames).permute(0, 3, 1, 2).float() / 255)
    src = clip_from_frames(frames)
    src_frames = [src.get_frame(i) for i in range(len(frames))]  # decode once, outside the timing
    del src_frames
    loop, filt = [], []
    for _ in range(repeats):
        up = SequentialUpscaler(load_model(weights)[0])
        t0 = time.perf_counter()
        upscale_frames(up, x)
        loop.append((time.perf_counter() - t0) / len(x))
        out = vsvqdsr.upscale(src, weights=str(weights), precision="fp32", scene_change=False)
        t0 = time.perf_counter()
        for f in out.frames():
            del f
        filt.append((time.perf_counter() - t0) / len(x))
    return min(loop), min(filt)


def video_frames(path: Path, n: int) -> np.ndarray:
    """The first ``n`` frames of a video as (n, h, w, 3) uint8, converted as ``vqdsr upscale`` converts them."""
    from vqdsr_core.commands.infer import probe_video, read_video

    frames = list(read_video(path, probe_video(path, None), n))
    return np.stack([(f.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8) for f in frames])


if __name__ == "__main__":  # the README's measurements: python tests/test_plugin_support.py PATH [VIDEO [recurrent]]
    import hashlib
    import logging

    logging.basicConfig(level=logging.INFO)
    trained = Path(sys.argv[1])
    if len(sys.argv) > 2:  # a real model on real frames (the README's figures for the shipped default model)
        starts, max_dist = (8, 16), 16
        frames = video_frames(Path(sys.argv[2]), max(starts) + max_dist + 1)
        digest = hashlib.sha256(trained.read_bytes()).hexdigest()
        recurrent = sys.argv[3:] == ["recurrent"]  # a single-frame file run recurrently (single_frame=False)
        curve = seek_decay(trained, frames, starts=starts, max_dist=max_dist, single_frame=False if recurrent else None)
        size = f"{frames.shape[2]}x{frames.shape[1]}"
        run = "recurrent" if recurrent else "as the file says"
        print(f"{trained.name} sha256 {digest[:12]}, {sys.argv[2]} {size}, cold starts at {starts}, fp32 CPU, {run}")
        print("PSNR by warm-up length:", {d: round(p, 1) for d, p in enumerate(curve)})
        sys.exit(0)
    if not trained.is_file():
        train_little(trained)
    clip = cartoon_frames(40, 16, 16, seed=21, motion=2)
    for name, w in (
        ("trained", trained),
        ("random init", tiny_vsr_weights(Path("/tmp/_rand.safetensors"), num_feat=64)),
    ):
        curve = seek_decay(w, clip, starts=(10, 20), max_dist=16)
        print(name, "PSNR by warm-up length:", {d: round(p, 1) for d, p in enumerate(curve)})
    loop, filt = filter_overhead(trained, cartoon_frames(20, 24, 32, seed=22))
    print(
        f"plain loop {loop * 1e3:.1f} ms/frame, filter {filt * 1e3:.1f} ms/frame, overhead {(filt - loop) * 1e3:.1f} ms"
    )
