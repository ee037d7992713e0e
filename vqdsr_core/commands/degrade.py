"""``vqdsr make-pairs`` / ``make-lq`` / ``degrade``: look at the degradation pipeline, build an LQ corpus, run VQD.

- ``make-pairs HR_DIR OUT_DIR --seed S``: example LR/HR pairs (PNG + params.json) drawn like training pairs.
- ``make-lq CLIPS_DIR OUT_DIR``: clean clips -> "real-like" LQ frames via old-media operators (a surrogate for
  real LQ animation when none is at hand; with real LQ video use ``prepare-ral``).
- ``degrade IN OUT --weights W``: the VQ degrader over a video or frame folder, file to file.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

VIDEO_OUT_EXTS = (".mp4", ".mkv", ".mov")


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "make-pairs",
        help="write example LR/HR training pairs (PNG + params.json) to look at",
        description="Draw N clips from HR_DIR (frame folders and/or videos), degrade each like a training pair "
        "and write OUT_DIR/pair_XXXX/{hr,lr}/*.png and params.json (every parameter that was drawn).",
    )
    p.add_argument("hr_dir", metavar="HR_DIR", help="folder of HR clips (frame folders of PNGs, or videos)")
    p.add_argument("out_dir", metavar="OUT_DIR")
    p.add_argument("--seed", type=int, required=True, help="seed: the same seed gives the same pairs")
    p.add_argument("--vqgan", metavar="W", help="VQGAN weight file: adds the VQ degradation (VQD-SR GAN stage)")
    p.add_argument("--n", type=int, default=8, help="number of pairs (default 8)")
    p.add_argument("--frames", type=int, default=15, help="frames per clip (default 15)")
    p.add_argument("--crop", type=int, default=256, help="HR crop size in px (0: whole frame; default 256)")
    p.add_argument("--config", metavar="JSON", help="DegradationConfig overrides as a JSON file")
    p.add_argument("--device", default="auto", help="device of the VQGAN (auto, cpu, cuda[:N])")
    p.set_defaults(func=run_make_pairs)

    q = subparsers.add_parser(
        "make-lq",
        help="turn clean clips into a real-like LQ frame corpus (old-media surrogate for real LQ video)",
        description="Each clip under CLIPS_DIR is resized to --height lines and degraded in chunks with the "
        "old-media preset (blur, noise, ringing, aliasing, NTSC/PAL composite, chroma bleed/shift, MPEG-2 / "
        "H.264 / MPEG-4 generations). Frames go to OUT_DIR/<clip>/ with params.json. A surrogate for real LQ "
        "animation; if you have real LQ video, use `vqdsr prepare-ral` instead.",
    )
    q.add_argument("clips_dir", metavar="CLIPS_DIR", help="folder of clean clips (frame folders or videos)")
    q.add_argument("out_dir", metavar="OUT_DIR")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--height", type=int, nargs="+", default=[360, 480], help="output heights drawn per clip")
    q.add_argument("--chunk", type=int, default=30, help="frames degraded together (one parameter draw)")
    q.add_argument("--every", type=int, default=1, help="keep every N-th frame (default 1)")
    q.add_argument("--no-composite", action="store_true", help="skip the NTSC/PAL step (no VapourSynth needed)")
    q.add_argument("--config", metavar="JSON", help="overrides of the old-media DegradationConfig as JSON")
    q.set_defaults(func=run_make_lq)

    r = subparsers.add_parser(
        "degrade",
        help="run the VQ degrader over a video or a frame folder",
        description="Reconstruct every frame of IN through the VQGAN with the k-th nearest codes (k_top, k_mid, "
        "k_bottom). OUT ending in .mp4/.mkv/.mov is written as H.264 video, anything else as a PNG frame folder.",
    )
    r.add_argument("input", metavar="IN", help="video file or folder of PNG frames (sorted by name)")
    r.add_argument("output", metavar="OUT", help="output video (.mp4/.mkv/.mov) or frame folder")
    r.add_argument("--weights", metavar="W", help="VQGAN weight file (default: the bundled one)")
    r.add_argument("--k-top", type=int, default=1)
    r.add_argument("--k-mid", type=int, default=1)
    r.add_argument("--k-bottom", type=int, default=1)
    r.add_argument(
        "--keep-colour",
        type=float,
        default=2.0,
        metavar="PX",
        help="sigma of the input's low-pass kept under the reconstruction, as in vsvqdsr.degrade (default 2; 0: raw)",
    )
    r.add_argument("--batch", type=int, default=4, help="frames per VQGAN batch (default 4)")
    r.add_argument("--crf", type=float, default=12.0, help="x264 CRF of a video output (default 12)")
    r.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    r.set_defaults(func=run_degrade)


# ---- helpers -------------------------------------------------------------------------------------------------


def _load_config(path: str | None, base: dict | None = None):
    from ..degrade.pipeline import DegradationConfig

    d = dict(base or {})
    if path:
        try:
            d.update(json.loads(Path(path).read_text()))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read the config JSON {path!r}: {e}") from e
    return DegradationConfig.from_dict(d)


def _load_vqgan(weights: str | None, device: str):
    from ..device import pick_device
    from ..weights import load_model, resolve_weights

    dev = pick_device(device, func="vqdsr")
    model, _ = load_model(resolve_weights(weights, "vqgan"), arch="multiscale_vqgan", device=dev)
    return model


def _write_json(path: Path, obj: object) -> None:
    from ..weights import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(obj, indent=1) + "\n").encode())


def _to_tensor(frames):
    import numpy as np
    import torch

    return torch.from_numpy(np.stack(frames)).permute(0, 3, 1, 2).float().div(255)


def _to_uint8(clip):
    from ..degrade.codec import to_uint8

    return to_uint8(clip)


def _clips(root: str):
    from ..data.clips import collect_clips

    clips = [c for c in collect_clips(root) if len(c)]
    if not clips:
        raise FileNotFoundError(f"no clips (frame folders or videos) under {root!r}")
    return clips


# ---- make-pairs ----------------------------------------------------------------------------------------------


def run_make_pairs(args: argparse.Namespace) -> int:
    import numpy as np

    from ..data.clips import save_png_atomic
    from ..degrade.pipeline import make_pair

    if args.n < 1 or args.frames < 1 or args.crop < 0:
        raise ValueError("--n and --frames must be >= 1 and --crop >= 0")
    cfg = _load_config(args.config, {"vq": bool(args.vqgan)})
    vqgan = _load_vqgan(args.vqgan, args.device) if args.vqgan else None
    clips = _clips(args.hr_dir)
    out = Path(args.out_dir)
    for i in range(args.n):
        rng = np.random.default_rng([args.seed, i])
        clip = clips[int(rng.integers(len(clips)))]
        n = min(args.frames, len(clip))
        start = int(rng.integers(len(clip) - n + 1))
        frames = [clip.read(t) for t in range(start, start + n)]
        h, w = frames[0].shape[:2]
        top = left = 0
        if args.crop and (h > args.crop or w > args.crop):
            ch, cw = min(h, args.crop), min(w, args.crop)
            top, left = int(rng.integers(h - ch + 1)), int(rng.integers(w - cw + 1))
            frames = [f[top : top + ch, left : left + cw] for f in frames]
        seed = int(rng.integers(2**31 - 1))
        lr, hr, params = make_pair(_to_tensor(frames), seed, cfg, vqgan)
        folder = out / f"pair_{i:04d}"
        for name, x in (("hr", hr), ("lr", lr)):
            for t, img in enumerate(_to_uint8(x)):
                save_png_atomic(img, folder / name / f"{t:08d}.png")
        source = {"clip": clip.name, "start": start, "frames": n, "crop_top": top, "crop_left": left}
        _write_json(folder / "params.json", {"seed": seed, "source": source, "params": params, "config": cfg.to_dict()})
        log.info("pair %d: %s frames %d..%d -> %s", i, clip.name, start, start + n - 1, folder)
    return 0


# ---- make-lq -------------------------------------------------------------------------------------------------


def run_make_lq(args: argparse.Namespace) -> int:
    import numpy as np

    from ..data.clips import save_png_atomic
    from ..degrade.pipeline import DegradationConfig, degrade_clip, mod_crop, sample_params
    from ..degrade.resize import resize

    if args.chunk < 1 or args.every < 1 or any(h < 16 for h in args.height):
        raise ValueError("--chunk and --every must be >= 1 and every --height >= 16")
    base = DegradationConfig.old_media(composite_prob=0.0 if args.no_composite else 0.5).to_dict()
    cfg = _load_config(args.config, base)
    out = Path(args.out_dir)
    for ci, clip in enumerate(_clips(args.clips_dir)):
        rng = np.random.default_rng([args.seed, ci])
        height = int(args.height[int(rng.integers(len(args.height)))])
        name = clip.name.replace("/", "__")
        records = []
        for c0 in range(0, len(clip), args.chunk):
            idx = list(range(c0, min(c0 + args.chunk, len(clip))))
            x = _to_tensor([clip.read(t) for t in idx])
            h, w = x.shape[-2:]
            size = (height, max(2, round(w * height / h / 2) * 2))
            x = mod_crop(resize(x, size, "bicubic") if size != (h, w) else x, 2)
            params = sample_params(cfg, rng, x.shape[0])
            lq = _to_uint8(degrade_clip(x, params))
            for t, img in zip(idx, lq):
                if t % args.every == 0:
                    save_png_atomic(img, out / name / f"{t:08d}.png")
            records.append({"frames": [idx[0], idx[-1]], "size": list(size), "params": params})
        _write_json(out / name / "params.json", {"source": clip.name, "seed": args.seed, "chunks": records})
        log.info("clip %s: %d frames at %d lines -> %s", clip.name, len(clip), height, out / name)
    return 0


# ---- degrade -------------------------------------------------------------------------------------------------


def _read_frames(path: Path):
    """Yield (H, W, 3) uint8 frames of a video (decoded with PyAV) or of a folder of frames sorted by name."""
    from ..data.clips import list_frames, load_image

    if path.is_dir():
        files = list_frames(path)
        if not files:
            raise FileNotFoundError(f"no image frames in {str(path)!r}")
        for f in files:
            yield load_image(f)
        return
    import av

    if not path.is_file():
        raise FileNotFoundError(f"input {str(path)!r} does not exist")
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")
    except av.FFmpegError as e:
        raise ValueError(f"cannot decode video {str(path)!r}: {e}") from e


def _video_rate(path: Path):
    from fractions import Fraction

    if path.is_dir():
        return Fraction(24)
    import av

    with av.open(str(path)) as container:
        return container.streams.video[0].average_rate or Fraction(24)


class _VideoWriter:
    """H.264 yuv420p writer into a temp file, renamed into place on close()."""

    def __init__(self, path: Path, rate, crf: float) -> None:
        import av

        from ..fileio import temp_beside

        self.path = path
        self.tmp = temp_beside(path, path.suffix)
        self.container = av.open(str(self.tmp), "w")
        self.stream = None
        self.rate, self.crf = rate, crf

    def write(self, img) -> None:
        import av

        if self.stream is None:
            self.stream = self.container.add_stream("libx264", rate=self.rate)
            h, w = img.shape[:2]
            self.stream.width, self.stream.height = w - w % 2, h - h % 2
            self.stream.pix_fmt = "yuv420p"
            self.stream.options = {"crf": f"{self.crf:g}"}
        img = img[: self.stream.height, : self.stream.width]
        for packet in self.stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            self.container.mux(packet)

    def close(self, ok: bool) -> None:
        try:
            if ok and self.stream is not None:
                for packet in self.stream.encode(None):
                    self.container.mux(packet)
            self.container.close()
            if ok:
                os.replace(self.tmp, self.path)
        finally:
            self.tmp.unlink(missing_ok=True)


def run_degrade(args: argparse.Namespace) -> int:
    import torch

    from ..data.clips import save_png_atomic
    from ..degrade.vq import check_keep_colour, vq_degrade

    for name in ("k_top", "k_mid", "k_bottom", "batch"):
        if getattr(args, name) < 1:
            raise ValueError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    params = {"k_top": args.k_top, "k_mid": args.k_mid, "k_bottom": args.k_bottom}
    params["keep_colour"] = check_keep_colour(args.keep_colour, "--keep-colour")
    src, dst = Path(args.input), Path(args.output)
    if src.resolve() == dst.resolve():
        raise ValueError("IN and OUT must differ")
    model = _load_vqgan(args.weights, args.device)
    to_video = dst.suffix.lower() in VIDEO_OUT_EXTS
    writer = _VideoWriter(dst, _video_rate(src), args.crf) if to_video else None
    count, ok = 0, False

    def flush(batch: list) -> None:
        nonlocal count
        with torch.no_grad():
            y = vq_degrade(_to_tensor(batch), model, params, batch_size=None)
        for img in _to_uint8(y):
            if writer is not None:
                writer.write(img)
            else:
                save_png_atomic(img, dst / f"{count:08d}.png")
            count += 1

    try:
        batch: list = []
        for frame in _read_frames(src):
            batch.append(frame)
            if len(batch) == args.batch:
                flush(batch)
                batch = []
        if batch:
            flush(batch)
        ok = count > 0
        if not ok:
            raise ValueError(f"no frames decoded from {str(src)!r}")
    finally:
        if writer is not None:
            writer.close(ok)
    log.info("degraded %d frames (k = %d/%d/%d) -> %s", count, args.k_top, args.k_mid, args.k_bottom, dst)
    return 0
