"""``vqdsr make-pairs`` / ``make-lq`` / ``degrade``: look at the degradation pipeline, build an LQ corpus, run VQD.

- ``make-pairs HR_DIR OUT_DIR --seed S``: example LR/HR pairs (PNG + params.json) drawn like training pairs.
- ``make-lq CLIPS_DIR OUT_DIR``: clean clips -> "real-like" LQ frames via old-media operators (a surrogate for
  real LQ animation when none is at hand; with real LQ video use ``prepare-ral``).
- ``degrade IN OUT``: the VQ degrader over a video or frame folder, file to file, with ``vsvqdsr.degrade``'s
  defaults and k draws (shared through ``vqdsr_core.options``).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

from .. import options as opt
from .infer import matrix_arg

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
        help="run the VQ degrader over a video or a frame folder (vsvqdsr.degrade, file to file)",
        description="Reconstruct every frame of IN through the VQGAN with the k-th nearest codes, with the defaults "
        "and draws of vsvqdsr.degrade: k per branch an int or an inclusive range LO-HI drawn uniformly, once for the "
        "clip (--per clip) or per frame from (seed, frame number). OUT ending in .mp4/.mkv/.mov is written as "
        "BT.709 H.264 video, anything else as a PNG frame folder.",
    )
    r.add_argument("input", metavar="IN", help="video file or folder of PNG frames (sorted by name)")
    r.add_argument("output", metavar="OUT", help="output video (.mp4/.mkv/.mov) or frame folder")
    r.add_argument("--weights", metavar="W", help="VQGAN weight file (default: the bundled one)")
    for name, default in (("top", opt.K_TOP), ("mid", opt.K_MID), ("bottom", opt.K_BOTTOM)):
        r.add_argument(f"--k-{name}", type=_k_range, default=_k_text(default), metavar="K|LO-HI",
                       help=f"k of the {name} branch (default {_k_text(default)})")  # fmt: skip
    r.add_argument("--seed", type=int, default=opt.SEED, help=f"seed of the k draws (default {opt.SEED})")
    r.add_argument(
        "--per", choices=opt.PERS, default=opt.PER, help=f"one k draw per clip or per frame (default {opt.PER})"
    )
    r.add_argument(
        "--keep-colour",
        type=float,
        default=opt.KEEP_COLOUR,
        metavar="PX",
        help=f"sigma of the input's low-pass kept under the reconstruction (default {opt.KEEP_COLOUR:g}; 0: raw)",
    )
    r.add_argument("--matrix", type=matrix_arg, default=None, help="YUV matrix of a video IN, as in vqdsr upscale")
    r.add_argument("--batch", type=int, default=4, help="frames per VQGAN batch (default 4)")
    r.add_argument("--crf", type=float, default=12.0, help="x264 CRF of a video output (default 12)")
    r.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.set_defaults(func=run_degrade)


def _k_text(k: object) -> str:
    return f"{k[0]}-{k[1]}" if isinstance(k, tuple | list) else str(k)


def _k_range(text: str) -> tuple[int, int]:
    """``3`` or ``1-10`` -> an inclusive (lo, hi) range."""
    try:
        lo, _, hi = text.partition("-")
        k = (int(lo), int(hi or lo))
        return opt.check_k("k", k, "k")
    except ValueError:
        msg = f"k must be an int >= 1 or a range LO-HI with 1 <= LO <= HI, got {text!r}"
        raise argparse.ArgumentTypeError(msg) from None


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


def _open_frames(path: Path, matrix: int | None):
    """(frame count, frame rate, iterator of (3, H, W) float RGB frames) of a video or of a folder of frames."""
    from fractions import Fraction

    from ..data.clips import list_frames, load_image, to_tensor
    from .infer import probe_video, read_video

    if path.is_dir():
        files = list_frames(path)
        if not files:
            raise FileNotFoundError(f"no image frames in {str(path)!r}")
        return len(files), Fraction(24), (to_tensor(load_image(f)) for f in files)
    if not path.is_file():
        raise FileNotFoundError(f"input {str(path)!r} does not exist")
    src = probe_video(path, matrix)
    return src.frames, src.rate, read_video(path, src)


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
            self.stream.codec_context.colorspace = 1  # BT.709, as converted below (vqdsr upscale reads it back)
            self.stream.codec_context.color_range = 1  # limited
        img = img[: self.stream.height, : self.stream.width]
        frame = av.VideoFrame.from_ndarray(img, format="rgb24")
        for packet in self.stream.encode(frame.reformat(format="yuv420p", dst_colorspace="ITU709",
                                                        dst_color_range="MPEG")):  # fmt: skip
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

    from ..cli import Progress
    from ..data.clips import save_png_atomic
    from ..degrade.vq import check_keep_colour, vq_degrade

    func = "vqdsr degrade"
    if args.batch < 1:
        raise ValueError(f"--batch must be >= 1, got {args.batch}")
    keep_colour = check_keep_colour(args.keep_colour, "--keep-colour")
    opt.check_seed_per(args.seed, args.per, func)
    src, dst = Path(args.input), Path(args.output)
    if src.resolve() == dst.resolve():
        raise ValueError("IN and OUT must differ")
    total, rate, frames = _open_frames(src, args.matrix)
    model = _load_vqgan(args.weights, args.device)
    multiscale = bool(getattr(model, "multiscale", True))
    ranges = opt.fit_k_ranges((args.k_top, args.k_mid, args.k_bottom), int(model.n_embed), multiscale, func)
    fixed = opt.draw_k(ranges, args.seed, None) if args.per == "clip" else None
    writer = _VideoWriter(dst, rate, args.crf) if dst.suffix.lower() in VIDEO_OUT_EXTS else None
    count, ok = 0, False

    def flush(batch: list, ks: tuple[int, ...]) -> None:
        nonlocal count
        params = {"k_top": ks[0], "k_mid": ks[1], "k_bottom": ks[2], "keep_colour": keep_colour}
        with torch.no_grad():
            y = vq_degrade(torch.stack(batch), model, params, batch_size=None)
        for img in _to_uint8(y):
            if writer is not None:
                writer.write(img)
            else:
                save_png_atomic(img, dst / f"{count:08d}.png")
            count += 1
            bar.update()

    try:
        with Progress(total, func, enabled=not args.no_progress) as bar:
            batch: list = []
            batch_k: tuple[int, ...] | None = None
            for n, frame in enumerate(frames):
                ks = fixed if fixed is not None else opt.draw_k(ranges, args.seed, n)
                if batch and (len(batch) == args.batch or ks != batch_k):  # one k per VQGAN call
                    flush(batch, batch_k)
                    batch = []
                batch.append(frame)
                batch_k = ks
            if batch:
                flush(batch, batch_k)
        ok = count > 0
        if not ok:
            raise ValueError(f"no frames decoded from {str(src)!r}")
    finally:
        if writer is not None:
            writer.close(ok)
    drawn = "k = {}/{}/{}".format(*fixed) if fixed is not None else f"k per frame from {ranges}, seed {args.seed}"
    log.info("%s: degraded %d frames (%s) -> %s", func, count, drawn, dst)
    return 0
