"""The real-LQ frame corpus (RAL-like) for VQGAN training: frames of real low-quality animation videos.

Scene filter: a frame is kept when the mean absolute difference (uint8 RGB, all pixels) to the previously
*kept* frame is at least ``threshold`` (the first frame is always kept), which drops held and near-identical
frames. Output: ``OUT/<video stem>/<source frame number:08d>.png`` plus ``ral.json`` (settings and counts) once a
video is finished. A rerun skips finished videos and continues an unfinished one after its last written frame
(the filter only depends on the last kept frame, so the result equals an uninterrupted run).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from .clips import list_frames, load_image, save_png_atomic
from .video import VideoReader, is_video_file

log = logging.getLogger(__name__)

DEFAULT_THRESHOLD = 8.0


def frame_mad(a: np.ndarray, b: np.ndarray) -> float:
    """Mean absolute difference of two uint8 images, in 0..255 units."""
    if a.shape != b.shape:
        raise ValueError(f"frame_mad: shapes differ, {a.shape} vs {b.shape}")
    return float(np.abs(a.astype(np.int16) - b.astype(np.int16)).mean())


def find_videos(inputs: Iterable[str | Path]) -> list[Path]:
    """Video files named in ``inputs``: files as given, folders searched recursively (sorted)."""
    videos: list[Path] = []
    for item in inputs:
        p = Path(item).expanduser()
        if not p.exists():
            raise FileNotFoundError(f"prepare_ral: {str(p)!r} does not exist")
        if p.is_dir():
            found = sorted(q for q in p.rglob("*") if is_video_file(q))
            if not found:
                log.warning("prepare_ral: no video files under %s", p)
            videos += found
        elif is_video_file(p):
            videos.append(p)
        else:
            raise ValueError(f"prepare_ral: {str(p)!r} is not a video file (known extensions: .mp4, .mkv, ...)")
    return videos


def _folder_names(videos: list[Path]) -> list[str]:
    stems = [v.stem for v in videos]
    return [
        s if stems.count(s) == 1 else f"{s}_{hashlib.sha1(str(v.resolve()).encode()).hexdigest()[:8]}"
        for s, v in zip(stems, videos)
    ]


def filter_video(
    video: str | Path,
    out_dir: str | Path,
    threshold: float = DEFAULT_THRESHOLD,
    max_frames: int | None = None,
    *,
    progress: bool = True,
) -> dict:
    """Extract the kept frames of one video into ``out_dir`` (resumable); returns its ``ral.json`` record."""
    from tqdm import tqdm

    from ..weights import atomic_write_bytes

    out_dir = Path(out_dir)
    marker = out_dir / "ral.json"
    settings = {"threshold": float(threshold), "max_frames": max_frames}
    if marker.is_file():
        rec = json.loads(marker.read_text())
        if {k: rec.get(k) for k in settings} != settings:
            raise ValueError(
                f"prepare_ral: {str(out_dir)!r} was made with threshold={rec.get('threshold')}, "
                f"max_frames={rec.get('max_frames')}; use another --out folder for other settings"
            )
        return {**rec, "skipped": True}
    reader = VideoReader(video)
    existing = list_frames(out_dir) if out_dir.is_dir() else []
    kept = len(existing)
    prev = load_image(existing[-1]) if existing else None
    start = int(existing[-1].stem) + 1 if existing else 0
    limit = max_frames if max_frames is not None else len(reader)
    bar = tqdm(range(start, len(reader)), desc=Path(video).name[:30], unit="f", disable=not progress, leave=False)
    for i in bar:
        if kept >= limit:
            break
        frame = reader[i]
        if prev is None or frame_mad(frame, prev) >= threshold:
            save_png_atomic(frame, out_dir / f"{i:08d}.png")
            prev, kept = frame, kept + 1
            bar.set_postfix(kept=kept)
    bar.close()
    rec = {
        "video": str(Path(video).resolve()),
        **settings,
        "frames": len(reader),
        "kept": kept,
        "resumed_at": start,
        "size": [reader.width, reader.height],
    }
    atomic_write_bytes(marker, json.dumps(rec, indent=1).encode())
    log.info("prepare-ral: %s: kept %d of %d frames -> %s", Path(video).name, kept, len(reader), out_dir)
    return {**rec, "skipped": False}


def prepare_ral(
    inputs: Iterable[str | Path],
    out: str | Path,
    threshold: float = DEFAULT_THRESHOLD,
    max_frames: int | None = None,
    *,
    skip_bad: bool = False,
    progress: bool = True,
) -> list[dict]:
    """Run the scene filter over every video in ``inputs`` into ``out/<stem>/``; one record per video.

    ``skip_bad``: log and skip videos that cannot be read (recorded with an ``"error"``) instead of raising.
    """
    if threshold < 0:
        raise ValueError(f"prepare_ral: threshold must be >= 0, got {threshold}")
    if max_frames is not None and max_frames < 1:
        raise ValueError(f"prepare_ral: max_frames must be >= 1, got {max_frames}")
    videos = find_videos(inputs)
    if not videos:
        raise ValueError("prepare_ral: no video files found in the inputs")
    records = []
    for video, name in zip(videos, _folder_names(videos)):
        try:
            records.append(filter_video(video, Path(out) / name, threshold, max_frames, progress=progress))
        except ValueError as e:  # VideoError included; settings mismatch too
            if not skip_bad or "another --out" in str(e):
                raise
            log.error("prepare-ral: skipping %s: %s", video, e)
            records.append({"video": str(video), "error": str(e)})
    return records
