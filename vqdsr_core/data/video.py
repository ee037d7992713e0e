"""Frame-accurate random access to video files through FFMS2 (the ``ffms2`` bindings over Debian's libffms2).

The index FFMS2 needs for exact seeking is built once and cached: next to the video as ``<video>.ffindex`` when that
folder is writable, else in ``weights.cache_dir()/ffindex`` (or an explicit ``cache_dir``). A stale or broken index
(the video changed) is rebuilt automatically. The decoder is opened lazily in each process, so a reader can be
pickled into DataLoader workers.
"""

from __future__ import annotations

import hashlib
import logging
import os
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from ..fileio import temp_beside

log = logging.getLogger(__name__)

VIDEO_EXTS = frozenset({".mp4", ".mkv", ".m4v", ".mov", ".avi", ".webm", ".ts", ".m2ts", ".mpg", ".mpeg", ".flv"})
VIDEO_EXTS |= {".wmv", ".264", ".h264", ".265", ".hevc", ".vob", ".ogv"}


class VideoError(ValueError):
    """A video file cannot be opened, indexed or decoded."""


def is_video_file(path: str | Path) -> bool:
    """True for a regular file whose extension is a known video container/stream."""
    p = Path(path)
    return p.suffix.lower() in VIDEO_EXTS and p.is_file()


def _ffms2() -> Any:
    try:
        import ffms2
    except (ImportError, OSError) as e:  # the bindings load libffms2 at import
        raise VideoError(f"VideoReader: the ffms2 bindings or libffms2 are not usable ({e}); install libffms2-5") from e
    ffms2.set_log_level(ffms2.AV_LOG_QUIET)
    return ffms2


def _writable_dir(path: Path) -> bool:
    return os.access(path, os.W_OK | os.X_OK)


class VideoReader:
    """Random access to the frames of the first video track: ``len(reader)``, ``reader[i] -> (H, W, 3) uint8 RGB``.

    Args:
        path: the video file.
        cache_dir: folder for the FFMS2 index; default: next to the video, or the user cache when not writable.
        threads: decoder threads (1 keeps data-loader workers from oversubscribing the CPU).
    """

    def __init__(self, path: str | Path, *, cache_dir: str | Path | None = None, threads: int = 1) -> None:
        self.path = Path(path).expanduser()
        if not self.path.exists():
            raise FileNotFoundError(f"VideoReader: video file {str(self.path)!r} does not exist")
        if not self.path.is_file():
            raise VideoError(f"VideoReader: {str(self.path)!r} is not a file")
        self.threads = int(threads)
        self.index_path = self._index_location(None if cache_dir is None else Path(cache_dir))
        self._source: Any = None
        self._pid = -1
        self._open()
        props = self._source.properties
        self.num_frames: int = int(props.NumFrames)
        self.fps: Fraction = Fraction(props.FPSNumerator, max(1, props.FPSDenominator))
        first = self._source.get_frame(0)
        self.width: int = int(first.EncodedWidth)
        self.height: int = int(first.EncodedHeight)
        if self.num_frames < 1:
            raise VideoError(f"VideoReader: {str(self.path)!r} has no decodable video frames")

    # --- index ------------------------------------------------------------------------------------------------
    def _index_location(self, cache_dir: Path | None, force_cache: bool = False) -> Path:
        """Beside the video when that folder is writable (unless an earlier fallback index exists), else a cache."""
        digest = hashlib.sha1(str(self.path.resolve()).encode()).hexdigest()[:16]
        if cache_dir is not None:
            cache_dir.mkdir(parents=True, exist_ok=True)
            return cache_dir / f"{self.path.name}.{digest}.ffindex"
        beside = self.path.with_name(self.path.name + ".ffindex")
        writable = not force_cache and _writable_dir(self.path.parent)
        if writable and beside.is_file():
            return beside
        from ..weights import cache_dir as user_cache

        try:
            cached = user_cache() / "ffindex" / f"{self.path.name}.{digest}.ffindex"
            if writable and not cached.is_file():
                return beside
            cached.parent.mkdir(parents=True, exist_ok=True)
            return cached
        except OSError:  # no usable user cache either: keep the index beside the video or in memory
            return beside

    def _load_index(self, ffms2: Any) -> Any:
        if self.index_path.is_file():
            try:
                return ffms2.Index.read(str(self.index_path), str(self.path))
            except ffms2.Error as e:
                log.info("VideoReader: rebuilding stale index %s (%s)", self.index_path, e)
        try:
            indexer = ffms2.Indexer(str(self.path))
            tracks = indexer.track_info_list
            video = [t.num for t in tracks if t.type == ffms2.FFMS_TYPE_VIDEO]
            if not video:
                raise VideoError(f"VideoReader: {str(self.path)!r} has no video track")
            for t in tracks:
                indexer.track_index_settings(t.num, t.num == video[0], 0)
            index = indexer.do_indexing2()
        except ffms2.Error as e:
            raise VideoError(f"VideoReader: cannot read video {str(self.path)!r}: {e}") from e
        for attempt in range(2):
            try:
                self._write_index(index)
                break
            except (ffms2.Error, OSError) as e:
                if attempt == 0 and self.index_path.parent == self.path.parent:  # next to the video failed
                    self.index_path = self._index_location(None, force_cache=True)
                    continue
                log.warning("VideoReader: could not cache index at %s: %s", self.index_path, e)
        return index

    def _write_index(self, index: Any) -> None:
        tmp = str(temp_beside(self.index_path))
        try:
            index.write(tmp)
            os.replace(tmp, self.index_path)
        finally:
            Path(tmp).unlink(missing_ok=True)

    def _open(self) -> None:
        ffms2 = _ffms2()
        index = self._load_index(ffms2)
        try:
            track = index.get_first_indexed_track_of_type(ffms2.FFMS_TYPE_VIDEO)
            src = ffms2.VideoSource(str(self.path), track, index, self.threads, ffms2.FFMS_SEEK_NORMAL)
            src.set_output_format([ffms2.get_pix_fmt("rgb24")])
        except ffms2.Error as e:
            raise VideoError(f"VideoReader: cannot decode video {str(self.path)!r}: {e}") from e
        self._source, self._pid = src, os.getpid()

    # --- access -----------------------------------------------------------------------------------------------
    def __len__(self) -> int:
        return self.num_frames

    def __getitem__(self, i: int) -> np.ndarray:
        """Frame ``i`` (negative counts from the end) as a fresh (H, W, 3) uint8 RGB array."""
        n = self.num_frames
        if not isinstance(i, int | np.integer):
            raise TypeError(f"VideoReader[{i!r}]: index must be an int")
        if not -n <= i < n:
            raise IndexError(f"VideoReader: frame {i} out of range for {str(self.path)!r} ({n} frames)")
        if self._source is None or self._pid != os.getpid():
            self._open()
        import ffms2

        try:
            frame = self._source.get_frame(int(i) % n)
        except ffms2.Error as e:
            raise VideoError(f"VideoReader: cannot decode frame {i} of {str(self.path)!r}: {e}") from e
        w, h, stride = frame.ScaledWidth, frame.ScaledHeight, frame.Linesize[0]
        plane = frame.planes[0].reshape(h, stride)[:, : w * 3]
        return plane.reshape(h, w, 3).copy()

    def __iter__(self):
        for i in range(self.num_frames):
            yield self[i]

    def close(self) -> None:
        """Release the decoder (it reopens on the next access)."""
        self._source = None

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        state["_source"], state["_pid"] = None, -1
        return state

    def __repr__(self) -> str:
        return f"VideoReader({str(self.path)!r}, {self.num_frames} frames, {self.width}x{self.height}, {self.fps} fps)"
