"""Training data: HR clips for the VSR net (fact sheet §C.1) and single LQ frames for the VQGAN (§B.6).

A clip is either a folder of frames (PNG/JPG, ordered by file name) or a video file read through FFMS2. Every
random draw of an item comes from a generator seeded with ``(seed, epoch, index)``, so with a fixed seed an item
is the same in any worker, in any order and after a resume; call ``set_epoch`` to get fresh draws each epoch.
"""

from __future__ import annotations

import bisect
import json
import logging
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..fileio import temp_beside
from .video import VideoReader, is_video_file

log = logging.getLogger(__name__)

IMAGE_EXTS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp"})

PathLike = str | Path


def _is_image(p: Path) -> bool:
    return p.suffix.lower() in IMAGE_EXTS and p.is_file()


def list_frames(folder: PathLike) -> list[Path]:
    """Image files directly inside ``folder``, sorted by name."""
    return sorted((p for p in Path(folder).iterdir() if _is_image(p)), key=lambda p: p.name)


def list_frame_folders(root: PathLike) -> list[Path]:
    """Every folder under ``root`` (``root`` included) that directly holds image frames, sorted by path."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"list_frame_folders: {str(root)!r} is not a folder")
    folders = {root} | {p for p in root.rglob("*") if p.is_dir()}
    return sorted(f for f in folders if any(_is_image(p) for p in f.iterdir()))


def load_image(path: PathLike) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))
    except (OSError, UnidentifiedImageError) as e:
        raise ValueError(f"load_image: cannot read image {str(path)!r}: {e}") from e


def save_png_atomic(img: np.ndarray, path: PathLike, compress_level: int = 3) -> None:
    """Write an (H, W, 3|4) uint8 image as PNG through a temp file and a rename (no half-written frames)."""
    import os

    from PIL import Image

    path = Path(path)
    tmp = temp_beside(path, ".png.tmp")
    try:
        Image.fromarray(np.ascontiguousarray(img)).save(tmp, format="PNG", compress_level=compress_level)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def is_validation_only(folder: PathLike) -> bool:
    """True when ``folder/meta.json`` says ``"validation_only": true`` (``vqdsr render-heldout`` sets)."""
    meta = Path(folder) / "meta.json"
    if not meta.is_file():
        return False
    try:
        return json.loads(meta.read_text()).get("validation_only") is True
    except (OSError, ValueError, AttributeError):
        return False


def refuse_validation_only(folders: Iterable[PathLike], fn: str) -> None:
    """ValueError naming ``fn`` when any of ``folders`` is a validation-only clip: such sets never feed training."""
    for folder in folders:
        if is_validation_only(folder):
            raise ValueError(
                f"{fn}: {str(folder)!r} belongs to a validation-only held-out set (its meta.json says "
                '"validation_only": true); it is for vqdsr eval --clips, never for training'
            )


def _image_size(path: Path) -> tuple[int, int]:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as im:
            return im.height, im.width
    except (OSError, UnidentifiedImageError) as e:
        raise ValueError(f"cannot read image {str(path)!r}: {e}") from e


class _FolderClip:
    def __init__(self, folder: Path, name: str) -> None:
        self.name, self.folder, self.frames = name, folder, list_frames(folder)
        self.size = _image_size(self.frames[0]) if self.frames else (0, 0)

    def __len__(self) -> int:
        return len(self.frames)

    def read(self, i: int) -> np.ndarray:
        return load_image(self.frames[i])


MAX_OPEN_VIDEOS = 8  # decoders kept open per process; the least recently used one is closed beyond that
_open_videos: OrderedDict[int, VideoReader] = OrderedDict()


class _VideoClip:
    def __init__(self, path: Path, name: str) -> None:
        self.name, self.reader = name, VideoReader(path)
        self.size = (self.reader.height, self.reader.width)
        self.reader.close()  # hundreds of clips must not hold hundreds of decoders

    def __len__(self) -> int:
        return len(self.reader)

    def read(self, i: int) -> np.ndarray:
        key = id(self.reader)
        _open_videos[key] = self.reader
        _open_videos.move_to_end(key)
        while len(_open_videos) > MAX_OPEN_VIDEOS:
            _open_videos.popitem(last=False)[1].close()
        return self.reader[i]


def _as_roots(roots: PathLike | Iterable[PathLike], fn: str) -> list[Path]:
    out = [Path(roots)] if isinstance(roots, str | Path) else [Path(r) for r in roots]
    if not out:
        raise ValueError(f"{fn}: no roots given")
    for r in out:
        if not r.exists():
            raise FileNotFoundError(f"{fn}: {str(r)!r} does not exist")
    return out


def collect_clips(roots: PathLike | Iterable[PathLike]) -> list[_FolderClip | _VideoClip]:
    """Clips under ``roots``: each root is a video file or a folder searched for frame folders and video files.

    A clip has ``.name`` (root name / relative path), ``len(clip)``, ``.size`` (H, W of its first frame) and
    ``.read(i) -> (H, W, 3) uint8 RGB``. Video clips keep at most ``MAX_OPEN_VIDEOS`` decoders open per process.
    """
    clips: list[_FolderClip | _VideoClip] = []
    for root in _as_roots(roots, "ClipDataset"):
        if root.is_file():
            if not is_video_file(root):
                raise ValueError(f"ClipDataset: {str(root)!r} is neither a folder nor a known video file")
            clips.append(_VideoClip(root, root.name))
            continue
        for folder in list_frame_folders(root):
            rel = folder.relative_to(root).as_posix()
            clips.append(_FolderClip(folder, f"{root.name}/{rel}" if rel != "." else root.name))
        for video in sorted(p for p in root.rglob("*") if is_video_file(p)):
            clips.append(_VideoClip(video, f"{root.name}/{video.relative_to(root).as_posix()}"))
    return clips


def _rng(seed: int | None, epoch: int, index: int) -> np.random.Generator:
    return np.random.default_rng(None if seed is None else [seed, epoch, index])


def flip_transpose(x: np.ndarray, hflip: bool, vflip: bool, transpose: bool) -> np.ndarray:
    """BasicSR ``augment`` on frames (..., H, W, C): h-flip, v-flip, then H/W transpose."""
    if hflip:
        x = x[..., :, ::-1, :]
    if vflip:
        x = x[..., ::-1, :, :]
    if transpose:
        x = np.swapaxes(x, -3, -2)
    return x


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """(..., H, W, 3) uint8 -> (..., 3, H, W) float32 in [0, 1]."""
    arr = np.ascontiguousarray(frames)
    t = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
    return t.movedim(-1, -3).float().div_(255.0)


class ClipDataset(Dataset):
    """HR training clips: ``{"hr": (num_frame, 3, crop, crop) float32 in [0, 1], "key": str}``.

    One item per frame of every clip (AnimeSR keys). Item ``i`` starts at its frame (a random start when the
    window would leave the clip), takes every ``interval``-th frame (interval drawn from those that fit), is
    reversed with p 0.5, cropped at one random spot, and h-flipped / v-flipped / transposed with p 0.5 each, all
    identically for the whole clip.

    Args:
        roots: folders of clips (frame folders and/or video files, searched recursively) or video files.
        num_frame: frames per item.
        crop: square crop size; ``None`` returns whole frames (transpose then only for square frames).
        intervals: frame strides to draw from.
        random_reverse, flips, transpose: the augmentations above.
        seed: base seed; ``None`` draws fresh randomness every call.
        skip_short: drop clips shorter than ``num_frame`` / smaller than ``crop`` with a warning instead of failing.
    """

    def __init__(
        self,
        roots: PathLike | Iterable[PathLike],
        num_frame: int = 15,
        crop: int | None = 256,
        intervals: Sequence[int] = (1, 2, 3),
        random_reverse: bool = True,
        flips: bool = True,
        transpose: bool = True,
        seed: int | None = None,
        *,
        skip_short: bool = False,
    ) -> None:
        if num_frame < 1:
            raise ValueError(f"ClipDataset: num_frame must be >= 1, got {num_frame}")
        if crop is not None and crop < 1:
            raise ValueError(f"ClipDataset: crop must be >= 1 or None, got {crop}")
        if not intervals or any(int(i) < 1 for i in intervals):
            raise ValueError(f"ClipDataset: intervals must be positive ints, got {tuple(intervals)}")
        self.num_frame, self.crop, self.intervals = int(num_frame), crop, tuple(int(i) for i in intervals)
        self.random_reverse, self.flips, self.transpose, self.seed = random_reverse, flips, transpose, seed
        self.epoch = 0
        clips = collect_clips(roots)
        refuse_validation_only((c.folder for c in clips if isinstance(c, _FolderClip)), "ClipDataset")
        if not clips:
            raise ValueError(f"ClipDataset: no clips (frame folders or video files) under {roots!r}")
        self.clips = []
        for c in clips:
            problem = self._problem(c)
            if problem and not skip_short:
                raise ValueError(f"ClipDataset: clip {c.name!r} {problem}")
            if problem:
                log.warning("ClipDataset: skipping clip %r: %s", c.name, problem)
            else:
                self.clips.append(c)
        if not self.clips:
            raise ValueError(f"ClipDataset: every clip under {roots!r} is too short or too small")
        self._starts = np.cumsum([0] + [len(c) for c in self.clips]).tolist()

    def _problem(self, clip: _FolderClip | _VideoClip) -> str | None:
        if len(clip) < self.num_frame:
            return f"has {len(clip)} frames; num_frame={self.num_frame} needs at least {self.num_frame}"
        h, w = clip.size
        if self.crop is not None and (h < self.crop or w < self.crop):
            return f"has {w}x{h} frames, smaller than the {self.crop}x{self.crop} crop"
        return None

    def set_epoch(self, epoch: int) -> None:
        """Change every item's random draws (reproducibly) for a new epoch."""
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self._starts[-1]

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"ClipDataset: index {index} out of range ({len(self)} items)")
        ci = bisect.bisect_right(self._starts, index) - 1
        clip, frame = self.clips[ci], index - self._starts[ci]
        rng = _rng(self.seed, self.epoch, index)
        n = len(clip)
        fits = [i for i in self.intervals if (self.num_frame - 1) * i + 1 <= n] or [1]
        interval = int(rng.choice(fits))
        span = (self.num_frame - 1) * interval + 1
        start = frame if frame + span <= n else int(rng.integers(0, n - span + 1))
        ids = list(range(start, start + span, interval))
        reverse = bool(self.random_reverse and rng.random() < 0.5)
        if reverse:
            ids.reverse()
        h, w = clip.size
        c = self.crop
        top = int(rng.integers(0, h - c + 1)) if c else 0
        left = int(rng.integers(0, w - c + 1)) if c else 0
        hflip, vflip, tr = (bool(rng.random() < 0.5) for _ in range(3))
        frames = []
        for i in ids:
            img = clip.read(i)
            if img.shape[:2] != (h, w):
                raise ValueError(
                    f"ClipDataset: frame {i} of clip {clip.name!r} is {img.shape[1]}x{img.shape[0]}, "
                    f"the clip's first frame is {w}x{h}"
                )
            frames.append(img[top : top + c, left : left + c] if c else img)
        clip_arr = np.stack(frames)
        square = clip_arr.shape[1] == clip_arr.shape[2]
        clip_arr = flip_transpose(
            clip_arr, self.flips and hflip, self.flips and vflip, self.transpose and tr and square
        )
        key = f"{clip.name}/{start:08d}+{interval}{'r' if reverse else ''}"
        return {"hr": to_tensor(clip_arr), "key": key}


_RESAMPLERS = ("nearest", "bilinear", "bicubic", "box", "lanczos")


class FrameFolderDataset(Dataset):
    """Single frames for VQGAN training (§B.6): ``{"image": (3, crop, crop) float32 in [0, 1], "key": str}``.

    Augmentations: random rescale (p ``scale_prob``, factor in ``scale_range``, 1.0–max when the frame would get
    smaller than the crop; resampler random among nearest/bilinear/bicubic/area/lanczos), random crop, h/v flips
    (p 0.5 each), channel shuffle (p ``channel_shuffle_prob``), per-channel RGB shift of up to ``rgb_shift``/255
    (p ``rgb_shift_prob``). Frames smaller than the crop are upscaled to fit.
    """

    def __init__(
        self,
        roots: PathLike | Iterable[PathLike],
        crop: int = 256,
        *,
        scale_prob: float = 0.3,
        scale_range: tuple[float, float] = (0.8, 2.0),
        flips: bool = True,
        channel_shuffle_prob: float = 0.3,
        rgb_shift_prob: float = 0.3,
        rgb_shift: float = 20.0,
        seed: int | None = None,
    ) -> None:
        if crop < 1:
            raise ValueError(f"FrameFolderDataset: crop must be >= 1, got {crop}")
        lo, hi = scale_range
        if not 0 < lo <= hi:
            raise ValueError(f"FrameFolderDataset: scale_range must satisfy 0 < lo <= hi, got {scale_range}")
        self.crop, self.scale_prob, self.scale_range, self.flips = int(crop), scale_prob, (lo, hi), flips
        self.channel_shuffle_prob, self.rgb_shift_prob, self.rgb_shift = channel_shuffle_prob, rgb_shift_prob, rgb_shift
        self.seed, self.epoch = seed, 0
        self.files: list[Path] = []
        self.keys: list[str] = []
        for root in _as_roots(roots, "FrameFolderDataset"):
            if root.is_file():
                self.files.append(root)
                self.keys.append(root.name)
                continue
            for p in sorted(q for q in root.rglob("*") if _is_image(q)):
                self.files.append(p)
                self.keys.append(f"{root.name}/{p.relative_to(root).as_posix()}")
        if not self.files:
            raise ValueError(f"FrameFolderDataset: no image frames (PNG/JPG) under {roots!r}")
        refuse_validation_only(sorted({p.parent for p in self.files}), "FrameFolderDataset")

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return len(self.files)

    def __getitem__(self, index: int) -> dict:
        if not 0 <= index < len(self):
            raise IndexError(f"FrameFolderDataset: index {index} out of range ({len(self)} items)")
        from PIL import Image

        rng = _rng(self.seed, self.epoch, index)
        img = load_image(self.files[index])
        h, w = img.shape[:2]
        small = min(h, w)
        scale = 1.0
        if rng.random() < self.scale_prob:
            lo, hi = self.scale_range
            scale = float(rng.uniform(1.0 if small * lo < self.crop else lo, max(hi, 1.0)))
        scale = max(scale, self.crop / small)
        if scale != 1.0:
            mode = _RESAMPLERS[int(rng.integers(len(_RESAMPLERS)))]
            size = (max(self.crop, round(w * scale)), max(self.crop, round(h * scale)))
            resample = getattr(Image.Resampling, mode.upper())
            img = np.asarray(Image.fromarray(img).resize(size, resample))
            h, w = img.shape[:2]
        top, left = int(rng.integers(0, h - self.crop + 1)), int(rng.integers(0, w - self.crop + 1))
        img = img[top : top + self.crop, left : left + self.crop]
        hflip, vflip = bool(rng.random() < 0.5), bool(rng.random() < 0.5)
        img = flip_transpose(img, self.flips and hflip, self.flips and vflip, False)
        if rng.random() < self.channel_shuffle_prob:
            img = img[..., rng.permutation(3)]
        if rng.random() < self.rgb_shift_prob:
            shift = rng.uniform(-self.rgb_shift, self.rgb_shift, 3)
            img = np.clip(img.astype(np.float32) + shift, 0, 255).round().astype(np.uint8)
        return {"image": to_tensor(img), "key": self.keys[index]}
