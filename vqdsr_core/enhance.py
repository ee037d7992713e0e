"""HR-SR enhancement of training frames (VQD-SR §3.3).

Each HR frame is upscaled x4 by a small pretrained SR model (realesr-animevideov3, imported from ncnn) and then
bicubic-downsampled back to its own size with antialiasing (MATLAB ``imresize`` style). This sharpens lines and
removes the blur and compression of the source, giving cleaner HR targets.

``enhance_tree`` mirrors a folder tree: every folder holding frames (and every video, when
``vqdsr_core.data.video`` is available) becomes an output folder of PNG frames under the same relative path.
Frames already written are skipped, so an interrupted run resumes; each PNG is written atomically.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .data.clips import load_image, save_png_atomic
from .importers.ncnn import upscale_frames

log = logging.getLogger(__name__)

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff"})


def enhance_frames(x: Tensor, model: nn.Module, tile: int = 0, pad: int = 10) -> Tensor:
    """(N, 3, H, W) in [0, 1] -> (N, 3, H, W) float32 in [0, 1]: SR x4, then antialiased bicubic back to H x W."""
    if x.ndim != 4 or x.shape[1] != 3:
        raise ValueError(f"enhance_frames: expected (N, 3, H, W) in [0, 1], got {tuple(x.shape)}")
    h, w = x.shape[-2:]
    sr = upscale_frames(model, x, pad=pad, tile=tile)  # (N, 3, 4H, 4W)
    return F.interpolate(sr, size=(h, w), mode="bicubic", align_corners=False, antialias=True).clamp_(0, 1)


def _to_uint8(x: Tensor) -> np.ndarray:
    return (x.mul(255).round_().clamp_(0, 255)).to(torch.uint8).permute(1, 2, 0).cpu().numpy()


@dataclass
class Job:
    """One source (a frame folder or a video) and the folder its enhanced PNGs go to."""

    source: Path
    out_dir: Path
    is_video: bool


def _video_support() -> tuple | None:
    """(is_video_file, VideoReader) from ``vqdsr_core.data.video``, or None where that module is unavailable."""
    try:
        from .data.video import VideoReader, is_video_file
    except ImportError:
        return None
    return is_video_file, VideoReader


def find_jobs(in_dir: Path, out_dir: Path) -> list[Job]:
    """Every frame folder and video under ``in_dir``, mapped to the mirrored folder under ``out_dir``."""
    in_dir, out_dir = Path(in_dir), Path(out_dir)
    if not in_dir.is_dir():
        raise FileNotFoundError(f"enhance: input {str(in_dir)!r} is not a folder")
    if out_dir.resolve().is_relative_to(in_dir.resolve()):
        raise ValueError(f"enhance: output {str(out_dir)!r} must not lie inside the input {str(in_dir)!r}")
    video = _video_support()
    jobs = []
    for folder in sorted({in_dir} | {p for p in in_dir.rglob("*") if p.is_dir()}):
        files = sorted(p for p in folder.iterdir() if p.is_file() and not p.name.startswith("."))
        rel = folder.relative_to(in_dir)
        if any(p.suffix.lower() in IMAGE_EXTS for p in files):
            jobs.append(Job(folder, out_dir / rel, False))
        for p in files:
            if video and video[0](p):
                jobs.append(Job(p, out_dir / rel / p.stem, True))
    return jobs


def _frame_list(job: Job) -> list[tuple[str, object]]:
    """(output file name, source) pairs: image paths, or frame indices of a video."""
    if job.is_video:
        video = _video_support()
        assert video is not None
        n = len(video[1](job.source))
        return [(f"{i:08d}.png", i) for i in range(n)]
    frames = sorted(p for p in job.source.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTS)
    return [(f"{p.stem}.png", p) for p in frames]


def enhance_tree(
    in_dir: str | Path,
    out_dir: str | Path,
    model: nn.Module,
    *,
    tile: int = 0,
    pad: int = 10,
    overwrite: bool = False,
    progress: bool = True,
) -> dict[str, int]:
    """Enhance every frame under ``in_dir`` into ``out_dir`` (mirrored layout, PNG); returns counts of frames
    ``written`` and ``skipped`` (already present). Resumable: existing outputs are kept unless ``overwrite``."""
    from tqdm import tqdm

    jobs = find_jobs(Path(in_dir), Path(out_dir))
    if not jobs:
        raise ValueError(f"enhance: no image frames or videos found under {str(in_dir)!r}")
    work = [(job, name, src) for job in jobs for name, src in _frame_list(job)]
    todo = [w for w in work if overwrite or not (w[0].out_dir / w[1]).is_file()]
    counts = {"written": 0, "skipped": len(work) - len(todo)}
    if counts["skipped"]:
        log.info("enhance: %d of %d frames already done, skipping them", counts["skipped"], len(work))
    video = _video_support()
    reader, reader_path = None, None
    try:
        for job, name, src in tqdm(todo, desc="enhance-hr", unit="frame", disable=not progress, dynamic_ncols=True):
            if job.is_video:
                if reader_path != job.source:
                    if reader is not None:
                        reader.close()
                    reader, reader_path = video[1](job.source), job.source
                img = reader[src]
            else:
                img = load_image(src)
            x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1)[None].float() / 255
            save_png_atomic(_to_uint8(enhance_frames(x, model, tile=tile, pad=pad)[0]), job.out_dir / name)
            counts["written"] += 1
    finally:
        if reader is not None:
            reader.close()
    return counts
