"""VideoReader: frame-accurate random access on real H.264 files, index caching, clear errors."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest

from vqdsr_core.data.video import VideoError, VideoReader

BITS, BLOCK = 6, 16


def numbered_frames(n: int, h: int = 64, w: int = 96) -> np.ndarray:
    """(n, h, w, 3) uint8: frame i carries i as 6 black/white blocks (top row) over a moving gradient."""
    yy, xx = np.mgrid[0:h, 0:w]
    out = np.empty((n, h, w, 3), np.uint8)
    for i in range(n):
        out[i, ..., 0] = (xx * 2 + i * 5) % 256
        out[i, ..., 1] = (yy * 3 + i * 7) % 256
        out[i, ..., 2] = 100
        for b in range(BITS):
            out[i, :BLOCK, b * BLOCK : (b + 1) * BLOCK] = 255 if (i >> b) & 1 else 0
    return out


def read_number(frame: np.ndarray) -> int:
    return sum(1 << b for b in range(BITS) if frame[4 : BLOCK - 4, b * BLOCK + 4 : (b + 1) * BLOCK - 4].mean() > 128)


def write_h264(path: Path, frames: np.ndarray, fps: int = 25, gop: int = 10) -> Path:
    """Encode with libx264 (B-frames, short GOP) through PyAV."""
    import av

    with av.open(str(path), "w") as c:
        s = c.add_stream("libx264", rate=fps)
        s.width, s.height, s.pix_fmt = frames.shape[2], frames.shape[1], "yuv420p"
        s.options = {"crf": "18", "g": str(gop), "bf": "2", "preset": "ultrafast"}
        for f in frames:
            c.mux(s.encode(av.VideoFrame.from_ndarray(f, format="rgb24")))
        c.mux(s.encode())
    return path


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return write_h264(tmp_path_factory.mktemp("vid") / "numbers.mp4", numbered_frames(48))


def test_frame_accurate_random_access(video):
    r = VideoReader(video)
    assert len(r) == 48 and (r.width, r.height) == (96, 64) and r.fps == 25
    order = [*np.random.default_rng(0).permutation(48).tolist(), 47, 0, 23, 22, 21, 5]
    for i in order:
        frame = r[i]
        assert frame.shape == (64, 96, 3) and frame.dtype == np.uint8
        assert read_number(frame) == i
    assert read_number(r[-1]) == 47
    src = numbered_frames(48)
    assert np.abs(r[30].astype(int) - src[30]).mean() < 6  # RGB, not BGR / not another frame


def test_index_cached_next_to_video_and_rebuilt_when_stale(tmp_path):
    path = write_h264(tmp_path / "a.mp4", numbered_frames(12))
    r = VideoReader(path)
    assert r.index_path == tmp_path / "a.mp4.ffindex" and r.index_path.is_file()
    stamp = r.index_path.stat().st_mtime_ns
    assert len(VideoReader(path)) == 12 and r.index_path.stat().st_mtime_ns == stamp  # reused
    write_h264(path, numbered_frames(20))  # the video changes under the same name
    r2 = VideoReader(path)
    assert len(r2) == 20 and read_number(r2[19]) == 19


def test_index_falls_back_to_user_cache_when_folder_not_writable(tmp_path, monkeypatch):
    from vqdsr_core.data import video as video_mod

    path = write_h264(tmp_path / "ro.mp4", numbered_frames(6))
    monkeypatch.setenv("VSVQDSR_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(video_mod, "_writable_dir", lambda p: False)
    r = VideoReader(path)
    assert r.index_path.parent == tmp_path / "cache" / "ffindex" and r.index_path.is_file()
    assert not (tmp_path / "ro.mp4.ffindex").exists() and read_number(r[5]) == 5
    monkeypatch.setattr(video_mod, "_writable_dir", lambda p: True)  # the earlier fallback index is reused
    assert VideoReader(path).index_path == r.index_path


def test_explicit_cache_dir_and_pickling(tmp_path, video):
    r = VideoReader(video, cache_dir=tmp_path / "idx")
    assert r.index_path.parent == tmp_path / "idx" and r.index_path.is_file()
    clone = pickle.loads(pickle.dumps(r))
    assert read_number(clone[33]) == 33 and read_number(r[7]) == 7


def test_errors(tmp_path, video):
    with pytest.raises(FileNotFoundError, match=r"VideoReader.*does not exist"):
        VideoReader(tmp_path / "missing.mp4")
    bad = tmp_path / "garbage.mp4"
    bad.write_bytes(np.random.default_rng(1).integers(0, 256, 5000, dtype=np.uint8).tobytes())
    with pytest.raises(VideoError, match=r"VideoReader: cannot .*garbage\.mp4"):
        VideoReader(bad)
    with pytest.raises(VideoError, match="not a file"):
        VideoReader(tmp_path)
    r = VideoReader(video)
    with pytest.raises(IndexError, match="out of range"):
        r[48]
